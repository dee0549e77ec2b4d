/**
 * Security response headers on every response (success, problem documents, 404, 413, 429, docs), with no
 * helmet port: a fixed header set computed once from the configuration, scored by the MDN HTTP Observatory
 * rules (https://developer.mozilla.org/en-US/observatory). The API serves JSON only, so its CSP forbids
 * everything (`default-src 'none'`); /docs brings its own CSP, and a header a Response already carries
 * always wins (Elysia's merge keeps the Response's own headers), so the docs CSP and the docs assets'
 * `Cache-Control: public` survive.
 *
 * The Elysia plugin covers every response Elysia builds; `applySecurityHeaders` is the same set applied in
 * `createHandler` (src/app.ts) as a backstop for any Response that reaches the wire without passing
 * Elysia's header merge.
 */
import { Elysia } from 'elysia'
import type { Config } from '../config'

export const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

/**
 * Every powerful feature off. `publickey-credentials-get/-create` are deliberately not listed: Bulwark
 * serves no page that uses WebAuthn itself, and listing them as `()` would block a future sign-in page.
 */
export const PERMISSIONS_POLICY = [
  'accelerometer',
  'ambient-light-sensor',
  'autoplay',
  'battery',
  'bluetooth',
  'browsing-topics',
  'camera',
  'display-capture',
  'document-domain',
  'encrypted-media',
  'fullscreen',
  'gamepad',
  'geolocation',
  'gyroscope',
  'hid',
  'idle-detection',
  'interest-cohort',
  'local-fonts',
  'magnetometer',
  'microphone',
  'midi',
  'payment',
  'picture-in-picture',
  'screen-wake-lock',
  'serial',
  'speaker-selection',
  'usb',
  'web-share',
  'xr-spatial-tracking',
]
  .map((f) => `${f}=()`)
  .join(', ')

export const HSTS = 'max-age=63072000; includeSubDomains'

/** True when the public URL is https and plain HTTP was not allowed explicitly: only then is HSTS sent. */
export const hstsEnabled = (config: Pick<Config, 'publicUrl' | 'allowHttp'>): boolean =>
  config.publicUrl.toLowerCase().startsWith('https://') && !config.allowHttp

/** The header set (lower-case names) every response carries unless it sets the header itself. */
export function securityHeaders(config: Pick<Config, 'publicUrl' | 'allowHttp'>): Record<string, string> {
  const h: Record<string, string> = {
    'content-security-policy': API_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'permissions-policy': PERMISSIONS_POLICY,
    // Every API response may carry a token or personal data; only the static /docs assets say otherwise.
    'cache-control': 'no-store',
  }
  if (hstsEnabled(config)) h['strict-transport-security'] = HSTS
  return h
}

/** Headers that reveal the implementation; never sent. */
const REVEALING = ['x-powered-by', 'server']

/**
 * Fills in the security headers a Response lacks and drops implementation-revealing ones. Returns the
 * same Response when its headers are mutable, else a copy (e.g. a Response from fetch()).
 */
export function applySecurityHeaders(response: Response, headers: Record<string, string>): Response {
  const h = response.headers
  // The common case (Elysia already merged every header, nothing revealing): no allocation at all.
  let complete = true
  for (const k in headers) {
    if (!h.has(k)) {
      complete = false
      break
    }
  }
  if (complete && !h.has('x-powered-by') && !h.has('server')) return response
  const missing = Object.keys(headers).filter((k) => !h.has(k))
  const revealing = REVEALING.filter((k) => h.has(k))
  if (missing.length === 0 && revealing.length === 0) return response
  try {
    for (const k of missing) response.headers.set(k, headers[k]!)
    for (const k of revealing) response.headers.delete(k)
    return response
  } catch {
    const copy = new Headers(response.headers)
    for (const k of missing) copy.set(k, headers[k]!)
    for (const k of revealing) copy.delete(k)
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers: copy })
  }
}

/**
 * The global plugin: the header set as Elysia's default headers (`.headers()`), which every request's
 * `set.headers` starts from (one object copy when the context is made, no per-request hook), so every
 * response Elysia produces carries them.
 */
export function securityHeadersPlugin(config: Pick<Config, 'publicUrl' | 'allowHttp'>) {
  return new Elysia({ name: 'security-headers' }).headers(securityHeaders(config))
}
