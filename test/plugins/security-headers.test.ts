import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { t } from 'elysia'
import { testConfig } from '../../src/config'
import { AppError } from '../../src/lib/errors'
import { DOCS_CSP } from '../../src/plugins/docs'
import { API_CSP, applySecurityHeaders, HSTS, PERMISSIONS_POLICY, securityHeaders } from '../../src/plugins/security-headers'
import { startServer } from '../../src/server'
import { makeApp, type TestApp } from '../helpers'
import { testDatabaseEnv } from '../support/pg-apps'

const BASE: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': PERMISSIONS_POLICY,
}

/** The app plus routes that produce each class of response. */
async function probe(env: Record<string, string> = {}) {
  const a = await makeApp(env)
  a.app
    .post('/echo', ({ body }) => body, { body: t.Object({ name: t.String({ maxLength: 100 }) }, { additionalProperties: false }) })
    .get('/limited', () => {
      throw new AppError(429, 'rate_limited', 'Too many requests.', { headers: { 'retry-after': '60' } })
    })
    .get('/boom', () => {
      throw new Error('unexpected')
    })
  return a
}

type Case = [name: string, method: string, path: string, status: number, init?: { headers?: Record<string, string>; body?: string }]
const json = { 'content-type': 'application/json' }
const CASES: Case[] = [
  ['success', 'GET', '/health/live', 200],
  ['success with body', 'POST', '/echo', 200, { headers: json, body: '{"name":"a"}' }],
  ['404', 'GET', '/no-such-route', 404],
  ['413', 'POST', '/echo', 413, { headers: { ...json, 'content-length': String(2 * 1024 * 1024) }, body: '{}' }],
  ['415', 'POST', '/echo', 415, { headers: { 'content-type': 'text/plain' }, body: 'x' }],
  ['422', 'POST', '/echo', 422, { headers: json, body: '{"nope":1}' }],
  ['400', 'POST', '/echo', 400, { headers: json, body: '{' }],
  ['429', 'GET', '/limited', 429],
  ['500', 'GET', '/boom', 500],
  ['docs json', 'GET', '/docs/json', 200],
]

describe('security headers', () => {
  let a: TestApp
  beforeAll(async () => {
    a = await probe()
  })
  afterAll(() => a.close())

  for (const [name, method, path, status, init] of CASES) {
    test(`${name}: every header, API CSP and no-store`, async () => {
      const r = await a.handle(new Request(`http://localhost${path}`, { method, ...init }))
      expect(r.status).toBe(status)
      for (const [k, v] of Object.entries(BASE)) expect(r.headers.get(k), k).toBe(v)
      expect(r.headers.get('content-security-policy')).toBe(API_CSP)
      expect(r.headers.get('cache-control')).toBe('no-store')
      expect(r.headers.get('strict-transport-security')).toBeNull()
      expect(r.headers.get('x-powered-by')).toBeNull()
      expect(r.headers.get('server')).toBeNull()
    })
  }

  test('the Elysia plugin alone (app.handle, no createHandler backstop) sets them on success and error paths', async () => {
    for (const [name, method, path, status, init] of CASES) {
      const r = await a.app.handle(new Request(`http://localhost${path}`, { method, ...init }))
      expect(r.status, name).toBe(status)
      for (const [k, v] of Object.entries(BASE)) expect(r.headers.get(k), `${name} ${k}`).toBe(v)
      expect(r.headers.get('cache-control'), name).toBe('no-store')
    }
  })

  test('the 429 keeps its own Retry-After next to the security headers', async () => {
    const r = await a.req('GET', '/limited')
    expect(r.headers.get('retry-after')).toBe('60')
    expect(r.headers.get('x-frame-options')).toBe('DENY')
  })

  test('/docs keeps its own CSP; its static assets stay cacheable; the rest of the set is there', async () => {
    const page = await a.req('GET', '/docs')
    expect(page.headers.get('content-security-policy')).toBe(DOCS_CSP)
    expect(page.headers.get('cache-control')).toBe('no-store')
    for (const [k, v] of Object.entries(BASE)) expect(page.headers.get(k), k).toBe(v)
    for (const asset of ['/docs/assets/swagger-ui-bundle.js', '/docs/assets/swagger-ui.css', '/docs/assets/init.js']) {
      const r = await a.req('GET', asset)
      expect(r.status).toBe(200)
      expect(r.headers.get('cache-control'), asset).toBe('public, max-age=86400')
      expect(r.headers.get('x-content-type-options'), asset).toBe('nosniff')
      expect(r.headers.get('cross-origin-resource-policy'), asset).toBe('same-origin')
    }
  })

  test('Permissions-Policy turns powerful features off but leaves WebAuthn alone', () => {
    for (const f of ['camera', 'microphone', 'geolocation', 'payment', 'usb', 'fullscreen']) expect(PERMISSIONS_POLICY).toContain(`${f}=()`)
    expect(PERMISSIONS_POLICY).not.toContain('publickey-credentials')
  })
})

describe('HSTS', () => {
  test('sent when the public URL is https', async () => {
    const a = await probe({ BULWARK_PUBLIC_URL: 'https://auth.example.com' })
    try {
      for (const path of ['/health/live', '/no-such-route', '/limited', '/docs']) {
        expect((await a.req('GET', path)).headers.get('strict-transport-security'), path).toBe(HSTS)
      }
      expect(HSTS).toBe('max-age=63072000; includeSubDomains')
    } finally {
      await a.close()
    }
  })

  test('not sent over http, nor with BULWARK_ALLOW_HTTP=1', () => {
    expect(securityHeaders(testConfig())['strict-transport-security']).toBeUndefined()
    expect(securityHeaders(testConfig({ BULWARK_PUBLIC_URL: 'https://auth.example.com', BULWARK_ALLOW_HTTP: '1' }))['strict-transport-security']).toBeUndefined()
  })
})

describe('createHandler backstop', () => {
  const headers = securityHeaders(testConfig())

  test('fills what a Response lacks, keeps what it has, drops X-Powered-By and Server', () => {
    const r = applySecurityHeaders(
      new Response('x', { headers: { 'content-security-policy': DOCS_CSP, 'x-powered-by': 'Elysia', server: 'Bun/1.4' } }),
      headers,
    )
    expect(r.headers.get('content-security-policy')).toBe(DOCS_CSP)
    expect(r.headers.get('x-frame-options')).toBe('DENY')
    expect(r.headers.get('x-powered-by')).toBeNull()
    expect(r.headers.get('server')).toBeNull()
  })

  test('copies a Response whose headers are immutable', async () => {
    const immutable = Response.redirect('http://localhost/elsewhere', 302)
    const r = applySecurityHeaders(immutable, headers)
    expect(r.status).toBe(302)
    expect(r.headers.get('location')).toBe('http://localhost/elsewhere')
    expect(r.headers.get('x-content-type-options')).toBe('nosniff')
  })
})

describe('over a real socket', () => {
  test('no X-Powered-By or Server header, and the whole set', async () => {
    const db = await testDatabaseEnv({ BULWARK_PORT: '0' })
    const running = await startServer(testConfig(db.env))
    try {
      for (const path of ['/health/live', '/nope']) {
        const r = await fetch(`${running.url}${path}`)
        await r.arrayBuffer()
        expect(r.headers.get('x-powered-by')).toBeNull()
        expect(r.headers.get('server')).toBeNull()
        for (const [k, v] of Object.entries(BASE)) expect(r.headers.get(k), `${path} ${k}`).toBe(v)
      }
    } finally {
      await running.stop()
      await db.drop()
    }
  })
})
