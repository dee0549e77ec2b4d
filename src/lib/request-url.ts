/**
 * One usable URL for every request. Bun builds `request.url` from the `Host` header: an HTTP/1.0
 * request without one (RFC 9112 §3.2 lets HTTP/1.0 omit it), or one whose Host is empty or not a
 * host at all (`a/b`, `a b`), arrives with a relative URL (`/health/live`) that `new URL()` rejects;
 * and Elysia finds the path by searching for `/` from the 12th character, so a Host shorter than
 * four characters (`Host: x`) routes `http://x/health/live` to `/live`. Both are repaired here, once,
 * before the app sees the request; well-formed requests pass through untouched (no copy).
 */

/** An absolute http(s) URL whose authority is at least four characters, up to the path. */
const USABLE = /^https?:\/\/[^/?#]{4,}(?:[/?#]|$)/

/** The origin a repaired request is given: the configured public URL's, unless it is itself too short. */
export function fallbackOrigin(publicUrl: string): string {
  try {
    const origin = new URL(publicUrl).origin
    if (USABLE.test(`${origin}/`)) return origin
  } catch {}
  return 'http://localhost'
}

/** The path and query of a request URL (absolute or relative), always starting with `/`. */
export function pathAndQuery(url: string): string {
  if (url.startsWith('/')) return url
  const scheme = url.indexOf('://')
  const start = scheme < 0 ? -1 : url.indexOf('/', scheme + 3)
  if (start < 0) {
    const q = scheme < 0 ? -1 : url.indexOf('?', scheme + 3)
    return q < 0 ? '/' : `/${url.slice(q)}`
  }
  return url.slice(start)
}

/** The request itself when its URL is usable, else a copy (same method, headers, body, signal) on `origin`. */
export function withUsableUrl(request: Request, origin: string): Request {
  if (USABLE.test(request.url)) return request
  return new Request(`${origin}${pathAndQuery(request.url)}`, request)
}

/** The path of a request URL without query or fragment; never throws. */
export function pathOf(url: string): string {
  const pq = pathAndQuery(url)
  const end = pq.search(/[?#]/)
  return end < 0 ? pq : pq.slice(0, end)
}
