import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { brotliDecompressSync } from 'node:zlib'
import { AppError } from '../../src/lib/errors'
import { compressResponse, negotiateEncoding, NO_COMPRESS_HEADER, type Encoding } from '../../src/plugins/compression'
import { makeApp, type TestApp } from '../helpers'

const BIG = { items: Array.from({ length: 200 }, (_, i) => ({ id: i, name: `user number ${i}`, email: `user${i}@example.com` })) }
const BIG_TEXT = JSON.stringify(BIG)

function decode(bytes: Uint8Array<ArrayBuffer>, enc: string | null): string {
  const out = enc === 'zstd' ? Bun.zstdDecompressSync(bytes) : enc === 'br' ? brotliDecompressSync(bytes) : enc === 'gzip' ? Bun.gunzipSync(bytes) : bytes
  return new TextDecoder().decode(out)
}

describe('negotiation', () => {
  const cases: [string | null, Encoding | undefined][] = [
    [null, undefined],
    ['', undefined],
    ['identity', undefined],
    ['gzip', 'gzip'],
    ['x-gzip', 'gzip'],
    ['gzip, deflate, br, zstd', 'zstd'],
    ['gzip, deflate, br', 'br'],
    ['br;q=0.5, gzip;q=0.8', 'gzip'],
    ['zstd;q=0, br;q=0.1', 'br'],
    ['*', 'zstd'],
    ['*;q=0.5, zstd;q=0', 'br'],
    ['deflate', undefined],
    ['gzip;q=0', undefined],
    ['BR', 'br'],
  ]
  for (const [header, want] of cases) test(`${JSON.stringify(header)} → ${want ?? 'identity'}`, () => expect(negotiateEncoding(header)).toBe(want))
})

describe('compression through the app', () => {
  let a: TestApp
  beforeAll(async () => {
    a = await makeApp()
    a.app
      .get('/big', ({ set }) => {
        set.status = 201
        return BIG
      })
      .get('/small', () => ({ ok: true }))
      .get('/big-error', () => {
        throw new AppError(409, 'conflict', 'x'.repeat(3000))
      })
      .get('/no-transform', ({ set }) => {
        set.headers['cache-control'] = 'no-store, no-transform'
        return BIG
      })
      .get('/encoded', () => new Response(Bun.gzipSync(new TextEncoder().encode(BIG_TEXT)), { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }))
      .get('/cookie', ({ set }) => {
        set.headers['set-cookie'] = 'a=b; Path=/; HttpOnly'
        return BIG
      })
      .get('/marked', ({ set }) => {
        set.headers[NO_COMPRESS_HEADER] = '1'
        return BIG
      })
      .get('/png', () => new Response(new Uint8Array(5000), { headers: { 'content-type': 'image/png' } }))
      .get('/partial', () => new Response(BIG_TEXT, { status: 206, headers: { 'content-type': 'application/json', 'content-range': `bytes 0-${BIG_TEXT.length - 1}/${BIG_TEXT.length * 2}` } }))
      .get('/v1/auth/token-ish', () => BIG)
      .get('/v1/me/mfa/totp', () => BIG)
  })
  afterAll(() => a.close())

  const get = async (path: string, acceptEncoding?: string, method = 'GET') => {
    const headers: Record<string, string> = acceptEncoding ? { 'accept-encoding': acceptEncoding } : {}
    const r = await a.handle(new Request(`http://localhost${path}`, { method, headers }))
    const bytes = new Uint8Array(await r.arrayBuffer())
    return { r, bytes, enc: r.headers.get('content-encoding') }
  }

  for (const enc of ['zstd', 'br', 'gzip'] as const) {
    test(`${enc}: compressed, smaller, same status, decodes to the same JSON`, async () => {
      const { r, bytes } = await get('/big', enc)
      expect(r.status).toBe(201)
      expect(r.headers.get('content-encoding')).toBe(enc)
      expect(r.headers.get('vary')).toContain('Accept-Encoding')
      expect(bytes.byteLength).toBeLessThan(BIG_TEXT.length / 3)
      expect(JSON.parse(decode(bytes, enc))).toEqual(BIG)
      expect(r.headers.get('content-type')).toContain('application/json')
      expect(r.headers.get('x-content-type-options')).toBe('nosniff')
    })
  }

  test('a browser-style header picks the preferred encoding', async () => {
    expect((await get('/big', 'gzip, deflate, br, zstd')).enc).toBe('zstd')
    expect((await get('/big', 'gzip;q=1, br;q=0.5')).enc).toBe('gzip')
  })

  test('problem documents compress with their status kept', async () => {
    const { r, bytes, enc } = await get('/big-error', 'br')
    expect(r.status).toBe(409)
    expect(enc).toBe('br')
    expect(r.headers.get('content-type')).toBe('application/problem+json; charset=utf-8')
    expect(JSON.parse(decode(bytes, enc)).code).toBe('conflict')
  })

  test('no Accept-Encoding: identity, and Vary still says Accept-Encoding', async () => {
    const { r, bytes, enc } = await get('/big')
    expect(enc).toBeNull()
    expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual(BIG)
    expect(r.headers.get('vary')).toContain('Accept-Encoding')
  })

  const exempt: [string, string, string?][] = [
    ['under 1 KiB', '/small'],
    ['Cache-Control: no-transform', '/no-transform'],
    ['a response that sets a cookie', '/cookie'],
    ['a response marked by its route', '/marked'],
    ['a non-compressible type', '/png'],
    ['a 206', '/partial'],
    ['anything under /v1/auth/', '/v1/auth/token-ish'],
    ['anything under /v1/me/mfa', '/v1/me/mfa/totp'],
    ['HEAD', '/big', 'HEAD'],
  ]
  for (const [name, path, method] of exempt) {
    test(`not compressed: ${name}`, async () => {
      const { r, enc } = await get(path, 'zstd, br, gzip', method)
      expect(enc).toBeNull()
      expect(r.headers.get('vary')).toContain('Accept-Encoding')
      expect(r.headers.has(NO_COMPRESS_HEADER)).toBe(false)
    })
  }

  test('an already encoded body is passed through untouched', async () => {
    const { enc, bytes } = await get('/encoded', 'zstd, br')
    expect(enc).toBe('gzip')
    expect(JSON.parse(decode(bytes, 'gzip'))).toEqual(BIG)
  })

  test('the Swagger UI bundle comes compressed when asked, and identical once decoded', async () => {
    const plain = await get('/docs/assets/swagger-ui-bundle.js')
    expect(plain.enc).toBeNull()
    expect(plain.bytes.byteLength).toBeGreaterThan(1_000_000)
    for (const enc of ['br', 'zstd', 'gzip'] as const) {
      const c = await get('/docs/assets/swagger-ui-bundle.js', enc)
      expect(c.enc).toBe(enc)
      expect(c.r.headers.get('cache-control')).toBe('public, max-age=86400')
      expect(c.bytes.byteLength).toBeLessThan(plain.bytes.byteLength / 2)
      expect(decode(c.bytes, enc)).toBe(new TextDecoder().decode(plain.bytes))
    }
    // Served again from the compressed-asset cache: same bytes.
    const again = await get('/docs/assets/swagger-ui-bundle.js', 'br')
    const first = await get('/docs/assets/swagger-ui-bundle.js', 'br')
    expect(Buffer.from(again.bytes).equals(Buffer.from(first.bytes))).toBe(true)
  })

  test('Vary keeps Origin next to Accept-Encoding, and a strong ETag becomes weak', async () => {
    const res = await compressResponse(
      new Request('http://localhost/x', { headers: { 'accept-encoding': 'gzip' } }),
      new Response(BIG_TEXT, { headers: { 'content-type': 'application/json', vary: 'Origin', etag: '"abc"' } }),
    )
    expect(res.headers.get('vary')).toBe('Origin, Accept-Encoding')
    expect(res.headers.get('etag')).toBe('W/"abc"')
    expect(res.headers.get('content-encoding')).toBe('gzip')
  })
})

describe('what is not compressed is passed through, not buffered or rebuilt', () => {
  const json = (body: string, headers: Record<string, string> = {}, status = 200) =>
    new Response(body, { status, headers: { 'content-type': 'application/json', ...headers } })
  const cases: [string, Request, () => Response][] = [
    ['no Accept-Encoding', new Request('http://localhost/x'), () => json(BIG_TEXT)],
    ['HEAD', new Request('http://localhost/x', { method: 'HEAD', headers: { 'accept-encoding': 'gzip' } }), () => json(BIG_TEXT)],
    ['a declared length under 1 KiB', new Request('http://localhost/x', { headers: { 'accept-encoding': 'gzip' } }), () => json('{"a":1}', { 'content-length': '7' })],
    ['a token path', new Request('http://localhost/v1/auth/refresh', { headers: { 'accept-encoding': 'gzip' } }), () => json(BIG_TEXT)],
    ['a non-compressible type', new Request('http://localhost/x', { headers: { 'accept-encoding': 'gzip' } }), () => new Response(new Uint8Array(5000), { headers: { 'content-type': 'image/png' } })],
    ['a 204', new Request('http://localhost/x', { headers: { 'accept-encoding': 'gzip' } }), () => new Response(null, { status: 204 })],
    ['a marked response', new Request('http://localhost/x', { headers: { 'accept-encoding': 'gzip' } }), () => json(BIG_TEXT, { [NO_COMPRESS_HEADER]: '1' })],
  ]
  for (const [name, request, make] of cases) {
    test(name, async () => {
      const original = make()
      const out = await compressResponse(request, original)
      expect(out).toBe(original) // the same object: no copy of headers, no new Response
      expect(out.bodyUsed).toBe(false)
      expect(out.headers.get('vary')).toBe('Accept-Encoding')
      expect(out.headers.has(NO_COMPRESS_HEADER)).toBe(false)
    })
  }
})
