/**
 * HTTP/1.0 against the binary over raw sockets. HTTP/1.0 may omit `Host` (RFC 9112 §3.2 requires it of
 * HTTP/1.1 only); Bun then hands the app a relative URL, and every `new URL(request.url)` threw: a 500.
 * A Host under four characters misrouted instead (Elysia looks for the path from the 12th character).
 * Every request must now get the answer its route gives, whatever its Host.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { parseRaw, rawHttp, signIn, startBinary } from './harness'
import { RAISED_LIMITS } from './accounts'

const bin = await startBinary({ env: RAISED_LIMITS })
afterAll(() => bin.stop())
const user = await signIn(bin.base, 'http10@example.com', 'a long passphrase for http one oh', true)

const HOSTS: [string, string | undefined][] = [
  ['no Host', undefined],
  ['Host: x (shorter than Elysia expects)', 'x'],
  ['Host: abc', 'abc'],
  ['an empty Host', ''],
  ['Host: a/b (not a host)', 'a/b'],
  ['the real Host', `127.0.0.1:${bin.port}`],
]

let seq = 0
const REQUESTS: { name: string; raw: (host: string | undefined) => string; check: (r: ReturnType<typeof parseRaw>) => void }[] = [
  {
    name: 'GET /health/live',
    raw: (h) => `GET /health/live HTTP/1.0\r\n${hostLine(h)}\r\n`,
    check: (r) => expect({ status: r.status, body: r.json }).toEqual({ status: 200, body: { status: 'ok' } }),
  },
  {
    name: 'GET /v1/me (JSON, authenticated)',
    raw: (h) => `GET /v1/me HTTP/1.0\r\n${hostLine(h)}Authorization: Bearer ${user.accessToken}\r\n\r\n`,
    check: (r) => expect({ status: r.status, type: r.headers['content-type'], email: r.json?.email }).toEqual({ status: 200, type: 'application/json;charset=utf-8', email: 'http10@example.com' }),
  },
  {
    // Long enough that a relative URL would be cut at its 12th character by Elysia's router (`/jwks.json`).
    name: 'GET /.well-known/jwks.json (JSON)',
    raw: (h) => `GET /.well-known/jwks.json HTTP/1.0\r\n${hostLine(h)}\r\n`,
    check: (r) => expect({ status: r.status, keys: Array.isArray(r.json?.keys) && r.json.keys.length > 0 }).toEqual({ status: 200, keys: true }),
  },
  {
    name: 'GET /v1/no-such-route (404)',
    raw: (h) => `GET /v1/no-such-route HTTP/1.0\r\n${hostLine(h)}\r\n`,
    check: (r) => expect({ status: r.status, type: r.headers['content-type'], code: r.json?.code }).toEqual({ status: 404, type: 'application/problem+json; charset=utf-8', code: 'not_found' }),
  },
  {
    name: 'POST /v1/auth/register with a body (201, written)',
    raw: (h) => {
      const body = JSON.stringify({ email: `h10-${++seq}-${Math.random().toString(36).slice(2, 8)}@example.com`, password: 'a long passphrase for http one oh' })
      return `POST /v1/auth/register HTTP/1.0\r\n${hostLine(h)}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
    },
    check: (r) => expect({ status: r.status, email: /^h10-/.test(r.json?.user?.email ?? '') }).toEqual({ status: 201, email: true }),
  },
  {
    name: 'POST /v1/auth/login with a bad body (422)',
    raw: (h) => `POST /v1/auth/login HTTP/1.0\r\n${hostLine(h)}Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{"email":"x"}`,
    check: (r) => expect({ status: r.status, code: r.json?.code }).toEqual({ status: 422, code: 'validation_failed' }),
  },
  {
    name: 'GET /v1/me/events?limit=1&limit=2 (the query is read from the repaired URL)',
    raw: (h) => `GET /v1/me/events?limit=1&limit=2 HTTP/1.0\r\n${hostLine(h)}Authorization: Bearer ${user.accessToken}\r\n\r\n`,
    check: (r) => expect({ status: r.status, code: r.json?.code }).toEqual({ status: 422, code: 'validation_failed' }),
  },
]

function hostLine(h: string | undefined) {
  return h === undefined ? '' : `Host: ${h}\r\n`
}

describe.each(HOSTS)('HTTP/1.0 with %s', (_label, host) => {
  test.each(REQUESTS.map((r) => [r.name, r]))('%s', async (_n, r) => {
    const res = parseRaw(await rawHttp(bin.port, r.raw(host)))
    r.check(res)
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
  })
})

describe('HTTP/1.1', () => {
  test('without Host is refused 400 by Bun itself (RFC 9112 §3.2 requires it)', async () => {
    const r = parseRaw(await rawHttp(bin.port, 'GET /health/live HTTP/1.1\r\nConnection: close\r\n\r\n'))
    expect(r.status).toBe(400)
  })
  test('with Host: x is routed correctly', async () => {
    const r = parseRaw(await rawHttp(bin.port, 'GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
    expect({ status: r.status, body: r.json }).toEqual({ status: 200, body: { status: 'ok' } })
  })
})

test('no request above was answered with a 500 or logged an error', async () => {
  // Every case above runs before this one (same file, in order). The log is written asynchronously:
  // wait for the access line of a last marked request before reading it.
  const marker = `http10-final-${Date.now()}`
  await rawHttp(bin.port, `GET /health/live HTTP/1.0\r\nX-Request-Id: ${marker}\r\n\r\n`)
  for (let i = 0; i < 200 && !bin.stdout().includes(marker); i++) await Bun.sleep(10)
  expect(bin.stdout()).toContain(marker)
  const errors = bin.stdout().split('\n').filter((l) => l.includes('"level":"error"'))
  expect(errors).toEqual([])
  expect(bin.stdout()).toContain('"path":"/health/live"')
})
