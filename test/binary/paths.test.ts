/**
 * Path normalisation against the binary over raw sockets. The rule: a path has one spelling.
 * Dot segments (`/./`, `/../`, and their percent-encoded forms) are resolved by the URL parser before
 * the app sees the request (RFC 3986 §5.2.4; WHATWG URL decodes `%2e` as a dot), so every rule keyed by
 * path (route rate limits, the login origin check) sees the resolved path. Everything else that is not
 * the exact spelling of a route is a 404 problem document: empty segments, a trailing slash, an encoded
 * slash (`%2F` is data, not a separator), another letter case, NUL and control characters written as
 * `%00`. Request lines Bun's own HTTP parser refuses (raw control bytes, targets over its header limit,
 * `*`) never reach the app: Bun answers them itself, without a problem document.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { call, parseRaw, rawHttp, signIn, startBinary } from './harness'
import { RAISED_LIMITS } from './accounts'

const bin = await startBinary({ env: RAISED_LIMITS })
afterAll(() => bin.stop())
const user = await signIn(bin.base, 'paths@example.com', 'a long passphrase for the paths 5', true)

type Outcome = 'served' | 'not_found' | 'refused_by_bun'
const a = (n: number) => 'a'.repeat(n)

/** [request target, outcome] for GET with the user's token; `served` means the answer of the canonical route. */
const TARGETS: [string, Outcome, string][] = [
  ['/health/live', 'served', '/health/live'],
  ['/./health/live', 'served', '/health/live'],
  ['/health/./live', 'served', '/health/live'],
  ['/v1/../health/live', 'served', '/health/live'],
  ['/../../health/live', 'served', '/health/live'],
  ['/health/%2e/live', 'served', '/health/live'],
  ['/%2e%2e/health/live', 'served', '/health/live'],
  ['/v1/%2E%2E/health/live', 'served', '/health/live'],
  ['/v1/./me', 'served', '/v1/me'],
  ['/v1/x/../me', 'served', '/v1/me'],
  ['/health\\live', 'served', '/health/live'],
  ['http://other.example/v1/me', 'served', '/v1/me'],
  ['//health/live', 'not_found', ''],
  ['/health//live', 'not_found', ''],
  ['/health/live/', 'not_found', ''],
  ['/v1/me/', 'not_found', ''],
  ['/v1/me/.', 'not_found', ''],
  ['/v1//me', 'not_found', ''],
  ['/health%2Flive', 'not_found', ''],
  ['/health%2flive', 'not_found', ''],
  ['/v1%2Fme', 'not_found', ''],
  ['/v1/me%2F', 'not_found', ''],
  ['/HEALTH/LIVE', 'not_found', ''],
  ['/Health/live', 'not_found', ''],
  ['/V1/me', 'not_found', ''],
  ['/v1/ME', 'not_found', ''],
  ['/health/live%00', 'not_found', ''],
  ['/health/%00live', 'not_found', ''],
  ['/health/live%0a', 'not_found', ''],
  ['/health/live%1b', 'not_found', ''],
  ['/health/live\u007f', 'not_found', ''],
  ['/health/live;x', 'not_found', ''],
  ['/health/live#fragment', 'not_found', ''],
  ['/h\u00e9alth/live', 'not_found', ''],
  [`/health/live/${a(2000)}`, 'not_found', ''],
  [`/${a(8000)}`, 'not_found', ''],
  [`/${a(12000)}`, 'not_found', ''],
  [`/${a(100_000)}`, 'refused_by_bun', ''],
  [`/${a(1_000_000)}`, 'refused_by_bun', ''],
  ['/health/live\u0000', 'refused_by_bun', ''],
  ['/health/live\u0001', 'refused_by_bun', ''],
  ['/health\tlive', 'refused_by_bun', ''],
  ['/health/live\u001b', 'refused_by_bun', ''],
  ['*', 'refused_by_bun', ''],
]

const get = (target: string) => rawHttp(bin.port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${bin.port}\r\nAuthorization: Bearer ${user.accessToken}\r\nConnection: close\r\n\r\n`)
const label = (t: string) => JSON.stringify(t.length > 40 ? `${t.slice(0, 20)}…(${t.length} chars)` : t)

const canonical = new Map<string, ReturnType<typeof parseRaw>>()
for (const path of new Set(TARGETS.map((t) => t[2]).filter(Boolean))) canonical.set(path, parseRaw(await get(path)))

describe('request targets', () => {
  test.each(TARGETS.map(([t, o, c]) => [label(t), o, t, c] as const))('%s → %s', async (_l, outcome, target, canon) => {
    const r = parseRaw(await get(target))
    if (outcome === 'served') {
      const want = canonical.get(canon)!
      expect(want.status).toBe(200)
      expect({ status: r.status, body: r.json }).toEqual({ status: want.status, body: want.json })
    } else if (outcome === 'not_found') {
      expect({ status: r.status, type: r.headers['content-type'], code: r.json?.code }).toEqual({ status: 404, type: 'application/problem+json; charset=utf-8', code: 'not_found' })
      expect(r.body.length).toBeLessThan(600)
    } else {
      expect(r.status).toBeGreaterThanOrEqual(400)
      expect(r.status).not.toBe(500)
    }
  })
})

describe('rules keyed by path see the resolved path', () => {
  const login = (path: string, headers: Record<string, string> = {}) => call(bin.base, 'POST', path, { body: { email: 'nobody@example.com', password: 'wrong' }, headers })
  test.each(['/v1/auth/./login', '/v1/x/../auth/login', '/v1/auth/%2e/login'])('%s carries the login rate-limit policy of /v1/auth/login', async (path) => {
    const [want, got] = [await login('/v1/auth/login'), await login(path)]
    expect(want.headers.get('ratelimit-policy')).toContain('login-ip')
    expect({ status: got.status, policy: got.headers.get('ratelimit-policy') }).toEqual({ status: want.status, policy: want.headers.get('ratelimit-policy') })
  })
  test.each(['/v1/auth/./login', '/v1/x/../auth/login'])('%s refuses a foreign Origin like /v1/auth/login (login CSRF)', async (path) => {
    const got = await login(path, { origin: 'https://evil.example' })
    expect({ status: got.status, code: got.json?.code }).toEqual({ status: 403, code: 'csrf_failed' })
  })
})

test('a very long unknown query parameter is a short 422 (the name is cut, never echoed whole)', async () => {
  const r = await call(bin.base, 'GET', `/health/live?${a(8000)}=1`)
  expect({ status: r.status, code: r.json?.code }).toEqual({ status: 422, code: 'validation_failed' })
  expect(r.text.length).toBeLessThan(1000)
})

test('the server still serves, and logged no error, after every target above', async () => {
  expect((await call(bin.base, 'GET', '/health/live')).status).toBe(200)
  const marker = `paths-final-${Date.now()}`
  await call(bin.base, 'GET', '/health/live', { headers: { 'x-request-id': marker } })
  for (let i = 0; i < 200 && !bin.stdout().includes(marker); i++) await Bun.sleep(10)
  expect(bin.stdout().split('\n').filter((l) => l.includes('"level":"error"'))).toEqual([])
})
