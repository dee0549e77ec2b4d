/**
 * Regressions (outside review) of the HIBP client against local fake range servers: it followed
 * redirects (a 302 to an internal address was fetched), read unbounded bodies, and had no circuit
 * breaker, so every sign-up waited the full timeout while HIBP was down.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { testConfig } from '../../src/config'
import { FakeClock } from '../../src/lib/clock'
import { createLogger } from '../../src/lib/logger'
import { PasswordHasher } from '../../src/lib/password'
import { HIBP_COOL_DOWN_MS, HIBP_MAX_BODY, hibpDigest, PasswordPolicy, type PasswordProblem } from '../../src/lib/password-policy'
import { expectProblem, makeApp, uniqueEmail, type TestApp } from '../helpers'

const BREACHED = 'pumpkin orchestra balloon'
const UNAVAILABLE: PasswordProblem[] = [{ code: 'breach_check_unavailable', message: 'Breach check unavailable; try again later.' }]
const servers: Array<ReturnType<typeof Bun.serve>> = []
let app: TestApp | undefined
afterEach(() => {
  servers.splice(0).forEach((s) => s.stop(true))
  app?.close()
  app = undefined
})

/** A fake range endpoint on a free loopback port that counts the requests it sees. */
function fakeHibp(handler: (req: Request) => Response | Promise<Response>) {
  const seen: string[] = []
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (req) => {
      seen.push(new URL(req.url).pathname)
      return handler(req)
    },
  })
  servers.push(server)
  return { seen, url: `http://127.0.0.1:${server.port}/range/`, origin: `http://127.0.0.1:${server.port}` }
}

const breachedRange = () => new Response(`${hibpDigest(BREACHED).slice(5)}:52\r\n00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0`)

function policy(env: Record<string, string>) {
  const lines: Record<string, unknown>[] = []
  const sink = { write: (s: string) => void lines.push(...s.split('\n').filter(Boolean).map((l) => JSON.parse(l))) }
  const config = testConfig({ BULWARK_HIBP: 'on', ...env })
  const clock = new FakeClock()
  const p = new PasswordPolicy({ config, hasher: new PasswordHasher(config.password), logger: createLogger('info', sink), clock })
  return { p, clock, lines }
}

describe('HIBP client hardening', () => {
  test('a redirect is not followed: the target sees no request and the check counts as failed', async () => {
    const internal = fakeHibp(() => breachedRange())
    const hibp = fakeHibp((req) => Response.redirect(`${internal.origin}${new URL(req.url).pathname}`, 302))
    for (const failure of ['closed', 'open'] as const) {
      const { p, lines } = policy({ BULWARK_HIBP_FAILURE: failure, BULWARK_HIBP_URL: hibp.url })
      expect(await p.check(BREACHED)).toEqual(failure === 'closed' ? UNAVAILABLE : [])
      expect(lines.find((l) => l.msg === 'hibp check failed')?.reason).toBe('redirect refused (HTTP 302)')
    }
    expect(hibp.seen).toHaveLength(2)
    expect(internal.seen).toEqual([])
  })

  test('an endless body is cut at 1 MiB (the stream is cancelled) and counts as failed', async () => {
    let produced = 0
    let cancelled = false
    const line = new TextEncoder().encode('00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0\r\n'.repeat(1700))
    const hibp = fakeHibp(
      () =>
        new Response(
          new ReadableStream({
            pull: async (c) => {
              produced += line.byteLength
              await c.enqueue(line)
            },
            cancel: () => {
              cancelled = true
            },
          }),
        ),
    )
    // A 30 s timeout: without the bound the check would run into the test's own 5 s limit.
    const { p, lines } = policy({ BULWARK_HIBP_FAILURE: 'closed', BULWARK_HIBP_TIMEOUT: '30s', BULWARK_HIBP_URL: hibp.url })
    expect(await p.check(BREACHED)).toEqual(UNAVAILABLE)
    expect(lines.find((l) => l.msg === 'hibp check failed')?.reason).toBe(`response body larger than ${HIBP_MAX_BODY} bytes`)
    // The server sees the connection dropped (socket buffers hold a few MiB more than was read).
    for (let i = 0; i < 200 && !cancelled; i++) await Bun.sleep(10)
    expect(cancelled).toBe(true)
    expect(produced).toBeGreaterThan(HIBP_MAX_BODY)
    expect(produced).toBeLessThan(64 * HIBP_MAX_BODY)
  })

  test('a failing server opens the breaker after 3 errors: later checks send nothing; after the cool-down one probe, success closes', async () => {
    let up = false
    const hibp = fakeHibp(() => (up ? breachedRange() : new Response('busy', { status: 503 })))
    const { p, clock, lines } = policy({ BULWARK_HIBP_FAILURE: 'closed', BULWARK_HIBP_URL: hibp.url })
    for (let i = 0; i < 6; i++) expect(await p.check(BREACHED)).toEqual(UNAVAILABLE)
    expect(hibp.seen).toHaveLength(3)
    expect(p.breachCheckState).toBe('open')
    clock.advance(HIBP_COOL_DOWN_MS)
    expect(await p.check(BREACHED)).toEqual(UNAVAILABLE)
    expect(hibp.seen).toHaveLength(4)
    up = true
    expect(await p.check(BREACHED)).toEqual(UNAVAILABLE) // open again after the failed probe
    expect(hibp.seen).toHaveLength(4)
    clock.advance(HIBP_COOL_DOWN_MS)
    expect((await p.check(BREACHED)).map((r) => r.code)).toEqual(['breached'])
    expect(p.breachCheckState).toBe('closed')
    expect(lines.filter((l) => l.msg === 'hibp circuit breaker changed state').map((l) => `${l.from}->${l.to}`)).toEqual([
      'closed->open',
      'open->half-open',
      'half-open->open',
      'open->half-open',
      'half-open->closed',
    ])
  })

  for (const failure of ['open', 'closed'] as const) {
    test(`sign-up while HIBP hangs (fail ${failure}): one request times out and opens the breaker; later sign-ups do not call it`, async () => {
      const hibp = fakeHibp(() => new Promise<Response>(() => {}))
      app = await makeApp({ BULWARK_HIBP: 'on', BULWARK_HIBP_FAILURE: failure, BULWARK_HIBP_TIMEOUT: '100ms', BULWARK_HIBP_URL: hibp.url })
      for (let i = 0; i < 4; i++) {
        const r = await app.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: 'violet tractor sings quietly' } })
        if (failure === 'open') expect(r.status).toBe(201)
        else expect(expectProblem(r, 422, 'weak_password').reasons.map((x: { code: string }) => x.code)).toEqual(['breach_check_unavailable'])
      }
      expect(hibp.seen).toHaveLength(1)
    })
  }
})
