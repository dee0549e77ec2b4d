/**
 * The password scorer's worker thread (src/lib/strength.ts): loads zxcvbn-ts's dictionaries once and answers
 * `{ id, password, words }` with `{ id, score, warning }`. A separate entry point of the build (package.json),
 * so the compiled binary carries it; it lives next to src/index.ts so its URL resolves the same way from the
 * sources and inside the binary.
 */
import { loadZxcvbn, scoreWith } from './lib/strength'

// Inside a worker `self` is the thread's side of the channel (the DOM typings describe a window).
const port = self as unknown as Worker
// The binary starts every thread with the tier-up thresholds raised for start-up (src/server.ts); this
// thread runs the same scoring loops for as long as it lives, so it gets the normal policy at once.
Bun.unsafe.setJITPolicy(1)
const scorer = loadZxcvbn()

port.onmessage = async (e: MessageEvent) => {
  const { id, password, words } = e.data as { id: number; password: string; words: string[] }
  try {
    const s = scoreWith(await scorer, password, words)
    port.postMessage({ id, score: s.score, warning: s.warning })
  } catch (err) {
    port.postMessage({ id, error: err instanceof Error ? err.message : String(err) })
  }
}
