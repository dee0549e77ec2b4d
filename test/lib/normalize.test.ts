import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Value } from '@sinclair/typebox/value'
import { t } from 'elysia'
import { DISPLAY_NAME_MAX, EmailSchema, normalizeDisplayName, normalizeEmail } from '../../src/lib/normalize'
import { expectProblem, makeApp, type TestApp } from '../helpers'

describe('normalizeEmail', () => {
  test('trims, NFKC-folds and lower-cases', () => {
    expect(normalizeEmail('  Alice@Example.COM \n')).toBe('alice@example.com')
    // Fullwidth letters and the fullwidth @ fold to ASCII under NFKC.
    expect(normalizeEmail('ＡＬＩＣＥ＠ｅｘａｍｐｌｅ.com')).toBe('alice@example.com')
    expect(normalizeEmail('ﬁona@example.com')).toBe('fiona@example.com')
  })
})

describe('normalizeDisplayName', () => {
  test('NFC composes', () => {
    expect(normalizeDisplayName('Jose\u0301')).toBe('Jos\u00e9')
  })
  test('strips controls, bidi overrides, isolates and marks', () => {
    expect(normalizeDisplayName('adm\u202Eni\u202C')).toBe('admni')
    expect(normalizeDisplayName('\u2066a\u2067b\u2068c\u2069\u200Ed\u200F\u202A\u202B\u202D')).toBe('abcd')
    expect(normalizeDisplayName('a\u0000b\u0007c\u007fd\u009b')).toBe('abcd')
    expect(normalizeDisplayName('zero\u200Bwidth\uFEFF')).toBe('zerowidth')
  })
  test('collapses whitespace (tabs and newlines included) and trims', () => {
    expect(normalizeDisplayName('  Ada \t\n  Lovelace\u00a0\u2003 ')).toBe('Ada Lovelace')
  })
  test('keeps what names need: ZWJ emoji, non-Latin scripts', () => {
    expect(normalizeDisplayName('👩\u200D💻 Ada')).toBe('👩\u200D💻 Ada')
    expect(normalizeDisplayName('山田 太郎')).toBe('山田 太郎')
  })
  test('at most 100 code points, never splitting a surrogate pair', () => {
    expect(Array.from(normalizeDisplayName('x'.repeat(150))).length).toBe(DISPLAY_NAME_MAX)
    const emoji = normalizeDisplayName('😀'.repeat(150))
    expect(Array.from(emoji).length).toBe(100)
    expect(emoji).toBe('😀'.repeat(100))
  })
  test('markup is kept as text (output encoding is JSON, not HTML stripping)', () => {
    expect(normalizeDisplayName('<script>alert(1)</script>')).toBe('<script>alert(1)</script>')
  })
})

describe('JSON output, never HTML', () => {
  let a: TestApp
  const XSS = '<script>alert(document.cookie)</script>'
  beforeAll(async () => {
    a = await makeApp()
    a.app.post('/echo', ({ body }) => ({ name: normalizeDisplayName(body.name), email: normalizeEmail(body.email) }), {
      body: t.Object({ name: t.String({ maxLength: 200 }), email: EmailSchema }, { additionalProperties: false }),
    })
  })
  afterAll(() => a.close())

  test('a stored <script> comes back as a JSON string with application/json and nosniff', async () => {
    const r = await a.req('POST', '/echo', { body: { name: XSS, email: 'A@Example.com' } })
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toStartWith('application/json')
    expect(r.headers.get('x-content-type-options')).toBe('nosniff')
    expect(r.headers.get('content-security-policy')).toContain("default-src 'none'")
    expect(r.body).toEqual({ name: XSS, email: 'a@example.com' })
    expect(r.text.startsWith('{')).toBe(true)
  })

  test('a hostile field name in a validation error comes back as problem+json with nosniff', async () => {
    const r = await a.req('POST', '/echo', { body: { name: 'a', email: 'a@example.com', [XSS]: 1 } })
    expectProblem(r, 422, 'validation_failed')
    expect(r.headers.get('x-content-type-options')).toBe('nosniff')
  })

  test('EmailSchema refuses non-addresses and addresses over 254 characters', async () => {
    expectProblem(await a.req('POST', '/echo', { body: { name: 'a', email: 'not-an-email' } }), 422, 'validation_failed')
    const long = `${'a'.repeat(60)}@${Array.from({ length: 4 }, () => 'b'.repeat(60)).join('.')}.com`
    expect(long.length).toBeGreaterThan(254)
    // The address is well-formed: only the length rule refuses it.
    expect(Value.Check(t.String({ format: 'email' }), long)).toBe(true)
    expectProblem(await a.req('POST', '/echo', { body: { name: 'a', email: long } }), 422, 'validation_failed')
    expect((await a.req('POST', '/echo', { body: { name: 'a', email: long.slice(long.length - 250) } })).status).toBe(200)
  })

  test('every GET route outside /docs and /metrics (Prometheus text by contract) answers JSON with nosniff', async () => {
    const routes = a.app.routes.filter((r) => r.method === 'GET' && !r.path.startsWith('/docs') && r.path !== '/metrics' && !r.path.includes(':') && !r.path.includes('*'))
    expect(routes.length).toBeGreaterThan(2)
    for (const route of routes) {
      const r = await a.req('GET', route.path)
      expect(r.headers.get('content-type'), route.path).toMatch(/^application\/(problem\+)?json/)
      expect(r.headers.get('x-content-type-options'), route.path).toBe('nosniff')
    }
  })
})

describe('JSON body rules (implemented in body-parser, covered in test/plugins/error-handler.test.ts)', () => {
  let a: TestApp
  beforeAll(async () => {
    a = await makeApp()
    a.app.post('/echo', ({ body }) => body, { body: t.Unknown() })
  })
  afterAll(() => a.close())
  const raw = (text: string) => a.req('POST', '/echo', { raw: text, headers: { 'content-type': 'application/json' } })

  test('prototype keys, depth over 32 and invalid UTF-8 are refused', async () => {
    expectProblem(await raw('{"__proto__":{"admin":true}}'), 400, 'malformed_json')
    expectProblem(await raw(`${'['.repeat(40)}${']'.repeat(40)}`), 400, 'malformed_json')
    const bad = await a.req('POST', '/echo', { raw: new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), headers: { 'content-type': 'application/json' } })
    expectProblem(bad, 400, 'malformed_json')
  })
})
