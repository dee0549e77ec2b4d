/**
 * Response compression (RFC 9110 §12.5.3 Accept-Encoding): zstd, br or gzip, chosen by q-value
 * (ties: zstd, then br, then gzip), for compressible types above 1 KiB.
 *
 * It runs in `createHandler` (src/app.ts) on the final Response rather than as an Elysia `mapResponse`
 * hook: there it sees every response exactly once, after Elysia has merged headers and status, whatever
 * path produced it (a returned object, a Response, a problem document from onError, a 404), and it cannot
 * disturb Elysia's error handling (a global mapResponse turns `status()` errors into empty 200s).
 *
 * Never compressed: HEAD, 204/206/304, `Cache-Control: no-transform`, bodies already encoded, and
 * token-bearing responses (BREACH, https://www.breachattack.com/): anything under /v1/auth/ or /v1/me/mfa,
 * anything that sets a cookie, and anything a route marks with the internal `x-bulwark-no-compress`
 * header (always stripped before sending). `Vary: Accept-Encoding` is on every response.
 */
import { brotliCompressSync, constants as zlib } from 'node:zlib'

export const MIN_COMPRESS_BYTES = 1024
/** Internal header a route sets to keep its response uncompressed (a secret in the body); never sent. */
export const NO_COMPRESS_HEADER = 'x-bulwark-no-compress'

export type Encoding = 'zstd' | 'br' | 'gzip'
const PREFERENCE: Encoding[] = ['zstd', 'br', 'gzip']

/** The best encoding the client accepts (q > 0), or undefined for identity. */
export function negotiateEncoding(acceptEncoding: string | null): Encoding | undefined {
  if (!acceptEncoding) return undefined
  const q = new Map<string, number>()
  for (const part of acceptEncoding.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';')
    if (!name) continue
    let weight = 1
    for (const p of params) {
      const m = /^\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*$/.exec(p)
      if (m) weight = Number(m[1])
    }
    q.set(name === 'x-gzip' ? 'gzip' : name, weight)
  }
  const star = q.get('*')
  let best: Encoding | undefined
  let bestQ = 0
  for (const enc of PREFERENCE) {
    const w = q.get(enc) ?? star ?? 0
    if (w > bestQ) {
      best = enc
      bestQ = w
    }
  }
  return best
}

const COMPRESSIBLE = /^(?:text\/|application\/(?:json|problem\+json|[\w.+-]*\+json|javascript|x-javascript|ecmascript|xml)|image\/svg\+xml)/i

/** True for content types worth compressing. */
export const isCompressible = (contentType: string | null): boolean => contentType !== null && COMPRESSIBLE.test(contentType.trim())

/** Paths whose responses carry tokens or secrets: never compressed (BREACH). */
export const isTokenPath = (path: string): boolean => path.startsWith('/v1/auth/') || path === '/v1/me/mfa' || path.startsWith('/v1/me/mfa/')

/** The same bytes typed as a plain-ArrayBuffer view (node:zlib and Bun return Buffers), without a copy. */
const view = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength)

function encode(bytes: Uint8Array<ArrayBuffer>, enc: Encoding): Uint8Array<ArrayBuffer> {
  switch (enc) {
    case 'zstd':
      return view(Bun.zstdCompressSync(bytes, { level: 3 }))
    case 'br':
      // Quality 5: most of brotli's gain at a fraction of the cost of the default 11 on dynamic responses.
      return view(brotliCompressSync(bytes, { params: { [zlib.BROTLI_PARAM_QUALITY]: 5, [zlib.BROTLI_PARAM_SIZE_HINT]: bytes.byteLength } }))
    case 'gzip':
      return Bun.gzipSync(bytes, { level: 6 })
  }
}

/** Compressed bodies of long-lived public responses (docs assets), so the 1.5 MB bundle is compressed once. */
const staticCache = new Map<string, Uint8Array<ArrayBuffer>>()
const STATIC_CACHE_MAX = 32

function appendVary(headers: Headers, value: string): void {
  const vary = headers.get('vary')
  if (!vary) headers.set('vary', value)
  else if (!vary.split(',').some((v) => v.trim().toLowerCase() === value.toLowerCase() || v.trim() === '*')) headers.set('vary', `${vary}, ${value}`)
}

/** Headers of a Response as a mutable copy (a Response's own headers may be immutable). */
const copyHeaders = (r: Response) => new Headers(r.headers)

/**
 * Returns the response compressed when the request accepts it and the response qualifies, else the
 * response itself with `Vary: Accept-Encoding` added and the internal marker removed.
 */
export async function compressResponse(request: Request, response: Response): Promise<Response> {
  const headers = copyHeaders(response)
  appendVary(headers, 'Accept-Encoding')
  const marked = headers.has(NO_COMPRESS_HEADER)
  headers.delete(NO_COMPRESS_HEADER)
  const plain = () => new Response(response.body, { status: response.status, statusText: response.statusText, headers })

  const enc = negotiateEncoding(request.headers.get('accept-encoding'))
  if (
    !enc ||
    marked ||
    request.method === 'HEAD' ||
    response.body === null ||
    response.status === 204 ||
    response.status === 206 ||
    response.status === 304 ||
    headers.has('content-encoding') ||
    headers.has('set-cookie') ||
    /(?:^|,)\s*no-transform\s*(?:,|$)/i.test(headers.get('cache-control') ?? '') ||
    !isCompressible(headers.get('content-type')) ||
    isTokenPath(new URL(request.url).pathname)
  ) {
    return plain()
  }
  const declared = Number(headers.get('content-length') ?? 'NaN')
  if (Number.isFinite(declared) && declared < MIN_COMPRESS_BYTES) return plain()

  const bytes = new Uint8Array(await response.arrayBuffer())
  const rebuild = (body: Uint8Array<ArrayBuffer>) => new Response(body, { status: response.status, statusText: response.statusText, headers })
  if (bytes.byteLength < MIN_COMPRESS_BYTES) return rebuild(bytes)

  const cacheable = /(?:^|,)\s*public\b/i.test(headers.get('cache-control') ?? '')
  const key = `${enc} ${request.url} ${bytes.byteLength}`
  let out = cacheable ? staticCache.get(key) : undefined
  if (!out) {
    out = encode(bytes, enc)
    if (cacheable) {
      if (staticCache.size >= STATIC_CACHE_MAX) staticCache.delete(staticCache.keys().next().value!)
      staticCache.set(key, out)
    }
  }
  if (out.byteLength >= bytes.byteLength) return rebuild(bytes)
  headers.set('content-encoding', enc)
  headers.delete('content-length')
  const etag = headers.get('etag')
  // A strong validator names exact bytes; the compressed body is different bytes.
  if (etag && !etag.startsWith('W/')) headers.set('etag', `W/${etag}`)
  return rebuild(out)
}
