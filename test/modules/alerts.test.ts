import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { makeApp, type TestApp } from '../helpers'

describe('alert webhook', () => {
  const received: Record<string, unknown>[] = []
  let failNext = 0
  let server: ReturnType<typeof Bun.serve>
  let a: TestApp
  beforeAll(() => {
    server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: async (req) => {
        if (failNext > 0) {
          failNext--
          return new Response('no', { status: 503 })
        }
        received.push((await req.json()) as Record<string, unknown>)
        return new Response(null, { status: 204 })
      },
    })
  })
  afterAll(() => server.stop(true))
  afterEach(() => a?.close())

  test('high-severity events are posted, others are not; one retry on failure', async () => {
    a = makeApp({ BULWARK_ALERT_WEBHOOK_URL: `http://127.0.0.1:${server.port}/hook` })
    const alerts = a.deps.alerts!
    a.deps.audit.record({ type: 'login', outcome: 'success', actorId: 'u1' })
    failNext = 1
    a.deps.audit.record({ type: 'refresh_token_reuse', outcome: 'failure', targetId: 'u2', details: { sessionId: 's1' } }, { ip: '192.0.2.1', requestId: 'r-12345678' })
    for (let i = 0; i < 100 && alerts.delivered + alerts.failed < 1; i++) await Bun.sleep(5)
    expect(alerts.delivered).toBe(1)
    expect(received.length).toBe(1)
    expect(received[0]).toMatchObject({ source: 'bulwark', type: 'refresh_token_reuse', targetId: 'u2', ip: '192.0.2.1', requestId: 'r-12345678' })
  })

  test('a dead receiver fails quietly without affecting the caller', async () => {
    a = makeApp({ BULWARK_ALERT_WEBHOOK_URL: 'http://127.0.0.1:1/hook' })
    const ok = await a.deps.alerts!.send({ type: 'account_locked' })
    expect(ok).toBe(false)
    expect(a.deps.alerts!.failed).toBe(1)
  })
})
