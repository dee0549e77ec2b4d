import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS, CORS_METHODS } from '../../src/plugins/cors'
import { makeApp, type TestApp } from '../helpers'

const APP = 'https://app.example.com'
const corsHeaders = (h: Headers) => [...h.keys()].filter((k) => k.startsWith('access-control-'))

describe('CORS with configured origins', () => {
  let a: TestApp
  beforeAll(async () => {
    a = await makeApp({ BULWARK_CORS_ORIGINS: `${APP},https://admin.example.com` })
  })
  afterAll(() => a.close())

  test('an allowed origin is echoed with credentials, exposed headers and Vary: Origin', async () => {
    const r = await a.req('GET', '/health/live', { headers: { origin: APP } })
    expect(r.status).toBe(200)
    expect(r.headers.get('access-control-allow-origin')).toBe(APP)
    expect(r.headers.get('access-control-allow-credentials')).toBe('true')
    expect(r.headers.get('access-control-expose-headers')).toBe(CORS_EXPOSE_HEADERS)
    expect(CORS_EXPOSE_HEADERS).toBe('X-Request-Id, RateLimit, RateLimit-Policy, Retry-After')
    expect(r.headers.get('vary')).toContain('Origin')
  })

  test('problem documents carry the CORS headers too, so the allowed app can read its errors', async () => {
    const r = await a.req('GET', '/no-such-route', { headers: { origin: APP } })
    expect(r.status).toBe(404)
    expect(r.headers.get('access-control-allow-origin')).toBe(APP)
  })

  for (const origin of ['https://evil.example', 'http://app.example.com', 'https://app.example.com.evil.example', 'null', 'https://APP.example.com']) {
    test(`a disallowed origin (${origin}) gets no CORS header at all`, async () => {
      const r = await a.req('GET', '/health/live', { headers: { origin } })
      expect(r.status).toBe(200)
      expect(corsHeaders(r.headers)).toEqual([])
      expect(r.headers.get('vary')).toContain('Origin')
    })
  }

  test('a preflight from an allowed origin: 204, explicit methods and headers, cached 10 minutes', async () => {
    const r = await a.req('OPTIONS', '/v1/anything', {
      headers: { origin: APP, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, x-csrf-token' },
    })
    expect(r.status).toBe(204)
    expect(r.text).toBe('')
    expect(r.headers.get('access-control-allow-origin')).toBe(APP)
    expect(r.headers.get('access-control-allow-credentials')).toBe('true')
    expect(r.headers.get('access-control-allow-methods')).toBe(CORS_METHODS)
    expect(r.headers.get('access-control-allow-headers')).toBe(CORS_ALLOW_HEADERS)
    expect(CORS_ALLOW_HEADERS).toBe('Authorization, Content-Type, X-CSRF-Token, X-Request-Id')
    expect(r.headers.get('access-control-max-age')).toBe('600')
    expect(r.headers.get('vary')).toContain('Origin')
    expect(r.headers.get('x-content-type-options')).toBe('nosniff')
  })

  test('a preflight from a disallowed origin gets no CORS headers (the browser refuses)', async () => {
    const r = await a.req('OPTIONS', '/health/live', { headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
    expect(r.status).not.toBe(204)
    expect(corsHeaders(r.headers)).toEqual([])
  })

  test('a request without Origin gets no CORS headers', async () => {
    const r = await a.req('GET', '/health/live')
    expect(corsHeaders(r.headers)).toEqual([])
  })
})

describe('CORS with no origins configured', () => {
  test('no CORS headers for any origin, and preflights are not answered', async () => {
    const a = await makeApp()
    try {
      const r = await a.req('GET', '/health/live', { headers: { origin: APP } })
      expect(corsHeaders(r.headers)).toEqual([])
      expect(r.headers.get('vary') ?? '').not.toContain('Origin')
      const pre = await a.req('OPTIONS', '/health/live', { headers: { origin: APP, 'access-control-request-method': 'GET' } })
      expect(pre.status).toBe(404)
      expect(corsHeaders(pre.headers)).toEqual([])
    } finally {
      await a.close()
    }
  })
})
