// A password scorer worker that runs but cannot score (as when its dictionaries fail to load): test/lib/strength.test.ts.
const port = self as unknown as Worker
port.onmessage = (e: MessageEvent) => port.postMessage({ id: (e.data as { id: number }).id, error: 'dictionaries failed to load' })
