/** A loopback webhook receiver for tests, and signature checks with the independent `standardwebhooks` package. */
import { setSystemTime } from 'bun:test'
import { Webhook } from 'standardwebhooks'

export interface Received {
  id: string
  timestamp: string
  signature: string
  headers: Record<string, string>
  body: string
  json: { type: string; timestamp: string; data: Record<string, unknown> }
}

/** Starts a receiver on 127.0.0.1:0; `answer` picks each response (default 204). */
export function receiver(answer: (r: Received, n: number) => Response | Promise<Response> = () => new Response(null, { status: 204 })) {
  const got: Received[] = []
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const body = await req.text()
      const headers = Object.fromEntries(req.headers.entries())
      let json: Received['json']
      try {
        json = JSON.parse(body)
      } catch {
        json = { type: '?', timestamp: '', data: {} }
      }
      const r: Received = { id: headers['webhook-id'] ?? '', timestamp: headers['webhook-timestamp'] ?? '', signature: headers['webhook-signature'] ?? '', headers, body, json }
      got.push(r)
      return answer(r, got.length)
    },
  })
  return { got, url: `http://127.0.0.1:${server.port}`, port: server.port, stop: () => server.stop(true) }
}

/**
 * Verifies a received message with `standardwebhooks` (not our code). The library checks the timestamp
 * against the wall clock (5 min tolerance); messages signed under a fake clock are checked at their own time.
 */
export function verifies(secret: string, r: Pick<Received, 'body' | 'headers'>): boolean {
  const at = Number(r.headers['webhook-timestamp']) * 1000
  setSystemTime(new Date(at))
  try {
    new Webhook(secret).verify(r.body, r.headers)
    return true
  } catch {
    return false
  } finally {
    setSystemTime()
  }
}
