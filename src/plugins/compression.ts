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
import { pathOf } from '../lib/request-url'

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

/** Clients send a handful of distinct Accept-Encoding values: each is parsed once (bounded). */
const negotiations = new Map<string, Encoding | undefined>()
const NEGOTIATIONS_MAX = 256

function negotiated(acceptEncoding: string | null): Encoding | undefined {
  if (!acceptEncoding) return undefined
  if (negotiations.has(acceptEncoding)) return negotiations.get(acceptEncoding)
  const enc = negotiateEncoding(acceptEncoding)
  if (acceptEncoding.length <= 256) {
    if (negotiations.size >= NEGOTIATIONS_MAX) negotiations.clear()
    negotiations.set(acceptEncoding, enc)
  }
  return enc
}

const NO_TRANSFORM = /(?:^|,)\s*no-transform\s*(?:,|$)/i

/**
 * The response as it goes out uncompressed: `Vary: Accept-Encoding` added and the internal marker removed,
 * on its own headers when they are mutable (no copy, no new Response); a copy only for immutable headers.
 */
function uncompressed(response: Response): Response {
  const h = response.headers
  try {
    appendVary(h, 'Accept-Encoding')
    h.delete(NO_COMPRESS_HEADER)
    return response
  } catch {
    const headers = new Headers(h)
    appendVary(headers, 'Accept-Encoding')
    headers.delete(NO_COMPRESS_HEADER)
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers })
  }
}

/** True when nothing about the request or the response's headers rules compression out (the size aside). */
function mayCompress(request: Request, response: Response): boolean {
  const h = response.headers
  if (request.method === 'HEAD' || response.body === null) return false
  const status = response.status
  if (status === 204 || status === 206 || status === 304) return false
  if (h.has(NO_COMPRESS_HEADER) || h.has('content-encoding') || h.has('set-cookie')) return false
  const cc = h.get('cache-control')
  if (cc !== null && NO_TRANSFORM.test(cc)) return false
  return isCompressible(h.get('content-type')) && !isTokenPath(pathOf(request.url))
}

/**
 * Returns the response compressed when the request accepts it and the response qualifies, else the
 * response itself with `Vary: Accept-Encoding` added and the internal marker removed. What cannot be
 * compressed (no Accept-Encoding, HEAD, no body, an exempt status, type or path, a declared length under
 * 1 KiB) is decided from headers alone and passed through as it is: no buffering, no new Response.
 */
export async function compressResponse(request: Request, response: Response): Promise<Response> {
  const enc = negotiated(request.headers.get('accept-encoding'))
  if (!enc || !mayCompress(request, response)) return uncompressed(response)
  const declared = response.headers.get('content-length')
  if (declared !== null && Number(declared) < MIN_COMPRESS_BYTES) return uncompressed(response)

  // The size is only known from the body: a Blob shares the bytes Bun holds (no copy) and tells it.
  const blob = await response.blob()
  const headers = response.headers
  const rebuild = (body: BodyInit) => uncompressed(new Response(body, { status: response.status, statusText: response.statusText, headers }))
  if (blob.size < MIN_COMPRESS_BYTES) return rebuild(blob)
  const bytes = new Uint8Array(await blob.arrayBuffer())

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
  const compressed = uncompressed(new Response(out, { status: response.status, statusText: response.statusText, headers }))
  const h = compressed.headers
  h.set('content-encoding', enc)
  h.delete('content-length')
  const etag = h.get('etag')
  // A strong validator names exact bytes; the compressed body is different bytes.
  if (etag && !etag.startsWith('W/')) h.set('etag', `W/${etag}`)
  return compressed
}
