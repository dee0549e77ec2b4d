import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { testConfig } from '../../src/config'
import { deriveKeys } from '../../src/lib/crypto'
import { csrfTokenFor, readCookie, sessionCookieName } from '../../src/plugins/csrf'
import { expectProblem, makeApp, type TestApp } from '../helpers'

const PUBLIC = 'http://localhost:3000'
const APP = 'https://app.example.com'
const COOKIE = '__Host-bulwark_session'
const SESSION = 'r1.refresh-token-value-abcdefghijklmnop'

/** The real app plus a state-changing route and a stand-in login (the lead's login is not here yet). */
async function csrfApp() {
  const a = await makeApp({ BULWARK_CORS_ORIGINS: APP })
  a.app.post('/v1/things', () => ({ ok: true })).delete('/v1/things', () => ({ ok: true })).post('/v1/auth/login', () => ({ ok: true }))
  return a
}

describe('CSRF for cookie sessions', () => {
  let a: TestApp
  let token: string
  const send = (method: string, headers: Record<string, string>, path = '/v1/things') => a.req(method, path, { headers })
  const events = () => a.deps.audit.list({ type: 'csrf_failed', limit: 100 })
  beforeAll(async () => {
    a = await csrfApp()
    token = csrfTokenFor(a.deps.keys, SESSION)
  })
  afterAll(() => a.close())

  test('no session cookie: no CSRF check', async () => {
    expect((await send('POST', {})).status).toBe(200)
  })

  test('cookie + valid token + Sec-Fetch-Site same-origin passes', async () => {
    const r = await send('POST', { cookie: `${COOKIE}=${SESSION}`, 'x-csrf-token': token, 'sec-fetch-site': 'same-origin' })
    expect(r.status).toBe(200)
  })

  test('cookie + valid token + Origin of the public URL, or of a CORS origin, passes', async () => {
    for (const origin of [PUBLIC, APP]) {
      const r = await send('DELETE', { cookie: `other=1; ${COOKIE}=${SESSION}`, 'x-csrf-token': token, origin })
      expect(r.status, origin).toBe(200)
    }
  })

  test('cookie without a token is refused with csrf_failed and a security event', async () => {
    const before = (await events()).length
    const r = await send('POST', { cookie: `${COOKIE}=${SESSION}`, 'sec-fetch-site': 'same-origin' })
    expectProblem(r, 403, 'csrf_failed')
    const after = await events()
    expect(after.length).toBe(before + 1)
    expect(after[0]!.outcome).toBe('failure')
    expect(after[0]!.details).toMatchObject({ reason: 'missing_token', method: 'POST', path: '/v1/things' })
    expect(JSON.stringify(after[0])).not.toContain(SESSION)
  })

  test('a token of another cookie (e.g. before a refresh rotated it) is refused', async () => {
    const stale = csrfTokenFor(a.deps.keys, 'an-older-refresh-token')
    expectProblem(await send('PATCH', { cookie: `${COOKIE}=${SESSION}`, 'x-csrf-token': stale, 'sec-fetch-site': 'same-origin' }), 403, 'csrf_failed')
    expectProblem(await send('POST', { cookie: `${COOKIE}=${SESSION}`, 'x-csrf-token': `${token}x`, 'sec-fetch-site': 'same-origin' }), 403, 'csrf_failed')
  })

  test('a token made with another secret is refused', async () => {
    const foreign = csrfTokenFor(deriveKeys('another-secret-0123456789-abcdefghijklmnop'), SESSION)
    expectProblem(await send('POST', { cookie: `${COOKIE}=${SESSION}`, 'x-csrf-token': foreign, 'sec-fetch-site': 'same-origin' }), 403, 'csrf_failed')
  })

  test('a valid token from a foreign origin is refused', async () => {
    for (const headers of <Record<string, string>[]>[{ origin: 'https://evil.example' }, { origin: 'null' }, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }]) {
      const r = await send('POST', { cookie: `${COOKIE}=${SESSION}`, 'x-csrf-token': token, ...headers })
      expectProblem(r, 403, 'csrf_failed')
    }
    expect((await events())[0]!.details).toMatchObject({ reason: 'origin' })
  })

  test('a valid token with neither Origin nor Sec-Fetch-Site is refused', async () => {
    expectProblem(await send('POST', { cookie: `${COOKIE}=${SESSION}`, 'x-csrf-token': token }), 403, 'csrf_failed')
  })

  test('the refusal happens before the body is read (no 415 for a non-JSON body)', async () => {
    const r = await a.req('POST', '/v1/things', { raw: 'x', headers: { 'content-type': 'text/plain', cookie: `${COOKIE}=${SESSION}`, origin: 'https://evil.example' } })
    expectProblem(r, 403, 'csrf_failed')
  })

  test('bearer requests are not affected, cookie or not', async () => {
    const r = await send('POST', { cookie: `${COOKIE}=${SESSION}`, authorization: 'Bearer abc', origin: 'https://evil.example' })
    expect(r.status).toBe(200)
  })

  test('safe methods are not affected', async () => {
    const r = await a.req('GET', '/health/live', { headers: { cookie: `${COOKIE}=${SESSION}`, origin: 'https://evil.example' } })
    expect(r.status).toBe(200)
  })

  test('a cookie of another name is not a session cookie', async () => {
    expect((await send('POST', { cookie: `bulwark_session=${SESSION}`, origin: 'https://evil.example' })).status).toBe(200)
  })

  test('login: refused from a foreign origin, accepted from none, same-origin or a CORS origin', async () => {
    expectProblem(await send('POST', { origin: 'https://evil.example' }, '/v1/auth/login'), 403, 'csrf_failed')
    expectProblem(await send('POST', { 'sec-fetch-site': 'cross-site' }, '/v1/auth/login'), 403, 'csrf_failed')
    expect((await events())[0]!.details).toMatchObject({ reason: 'login_origin', path: '/v1/auth/login' })
    expect((await send('POST', {}, '/v1/auth/login')).status).toBe(200)
    expect((await send('POST', { 'sec-fetch-site': 'same-origin', origin: PUBLIC }, '/v1/auth/login')).status).toBe(200)
    expect((await send('POST', { 'sec-fetch-site': 'cross-site', origin: APP }, '/v1/auth/login')).status).toBe(200)
    // A stale session cookie does not make login demand a CSRF token.
    expect((await send('POST', { cookie: `${COOKIE}=${SESSION}`, 'sec-fetch-site': 'same-origin' }, '/v1/auth/login')).status).toBe(200)
  })
})

describe('GET /v1/auth/csrf', () => {
  let a: TestApp
  beforeAll(async () => {
    a = await csrfApp()
  })
  afterAll(() => a.close())

  test('401 unauthorized without the session cookie', async () => {
    expectProblem(await a.req('GET', '/v1/auth/csrf'), 401, 'unauthorized')
  })

  test('returns the token bound to the cookie; it changes when the cookie rotates; not cacheable', async () => {
    const r = await a.req('GET', '/v1/auth/csrf', { headers: { cookie: `${COOKIE}=${SESSION}` } })
    expect(r.status).toBe(200)
    expect(Object.keys(r.body)).toEqual(['csrfToken'])
    expect(r.body.csrfToken).toBe(csrfTokenFor(a.deps.keys, SESSION))
    expect(r.headers.get('cache-control')).toBe('no-store')
    const rotated = await a.req('GET', '/v1/auth/csrf', { headers: { cookie: `${COOKIE}=${SESSION}-rotated` } })
    expect(rotated.body.csrfToken).not.toBe(r.body.csrfToken)
    // The token it hands out is the one the check accepts.
    const ok = await a.req('POST', '/v1/things', { headers: { cookie: `${COOKIE}=${SESSION}`, 'x-csrf-token': r.body.csrfToken, 'sec-fetch-site': 'same-origin' } })
    expect(ok.status).toBe(200)
  })

  test('is documented under auth with a summary and response schemas', async () => {
    const doc = (await a.req('GET', '/docs/json')).body
    const op = doc.paths['/v1/auth/csrf'].get
    expect(op.tags).toEqual(['auth'])
    expect(op.summary).toBeTruthy()
    expect(Object.keys(op.responses).sort()).toEqual(['200', '401', '429', '500', '503'])
  })
})

describe('session cookie name', () => {
  test('__Host- prefix except for plain-http deployments that allow it', () => {
    expect(sessionCookieName(testConfig({ BULWARK_PUBLIC_URL: 'https://auth.example.com' }))).toBe('__Host-bulwark_session')
    expect(sessionCookieName(testConfig())).toBe('__Host-bulwark_session')
    expect(sessionCookieName(testConfig({ BULWARK_PUBLIC_URL: 'http://auth.internal', BULWARK_ALLOW_HTTP: '1' }))).toBe('bulwark_session')
    expect(sessionCookieName(testConfig({ BULWARK_PUBLIC_URL: 'https://auth.example.com', BULWARK_ALLOW_HTTP: '1' }))).toBe('__Host-bulwark_session')
  })

  test('with BULWARK_ALLOW_HTTP=1 over http the plain name is the session cookie', async () => {
    const a = await makeApp({ BULWARK_PUBLIC_URL: 'http://auth.internal', BULWARK_ALLOW_HTTP: '1' })
    a.app.post('/v1/things', () => ({ ok: true }))
    try {
      expectProblem(await a.req('POST', '/v1/things', { headers: { cookie: `bulwark_session=${SESSION}`, origin: 'http://auth.internal' } }), 403, 'csrf_failed')
      const tok = csrfTokenFor(a.deps.keys, SESSION)
      expect((await a.req('POST', '/v1/things', { headers: { cookie: `bulwark_session=${SESSION}`, origin: 'http://auth.internal', 'x-csrf-token': tok } })).status).toBe(200)
    } finally {
      await a.close()
    }
  })

  test('readCookie takes the first exact name and ignores look-alikes', () => {
    expect(readCookie('a=1; __Host-bulwark_session=v1; __Host-bulwark_session=v2', COOKIE)).toBe('v1')
    expect(readCookie('x__Host-bulwark_session=v', COOKIE)).toBeUndefined()
    expect(readCookie(`${COOKIE}=`, COOKIE)).toBeUndefined()
    expect(readCookie(null, COOKIE)).toBeUndefined()
  })
})
