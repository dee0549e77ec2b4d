/**
 * CSRF protection for cookie sessions (OWASP CSRF cheat sheet: "signed double-submit cookie" plus
 * origin verification, https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html).
 *
 * A request that carries the session cookie, no Authorization header, and an unsafe method must pass both:
 * 1. origin: `Sec-Fetch-Site: same-origin|none`, or an `Origin` equal to the public URL's origin or one of
 *    BULWARK_CORS_ORIGINS (missing or foreign → refused);
 * 2. token: `X-CSRF-Token` equal (constant time) to an HMAC bound to the cookie value, fetched from
 *    `GET /v1/auth/csrf`. The refresh token (the cookie) rotates on refresh, so the token changes with it.
 * Bearer requests are unaffected: a cross-site page cannot attach an Authorization header without a
 * CORS preflight. Sign-in routes (which have no session yet) get the origin check whenever the browser
 * reveals a cross-site context, against login CSRF (signing a victim into the attacker's account).
 * The check runs in onRequest, before the body is read.
 */
import { Elysia, t } from 'elysia'
import { errors } from '../lib/schemas'
import type { Config } from '../config'
import { hashToken, safeEqual, type Keys } from '../lib/crypto'
import { AppError } from '../lib/errors'
import type { AuditService } from '../modules/audit/service'
import { metaOf } from './request-context'
import { pathOf } from '../lib/request-url'

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/** Routes that start a session: login CSRF is refused on them by the origin check alone. */
export const SESSION_START_PATHS = new Set(['/v1/auth/login', '/v1/auth/mfa/verify', '/v1/auth/passkey/verify'])

/**
 * Name of the session cookie: `__Host-bulwark_session` (Secure, Path=/, no Domain, enforced by browsers),
 * or `bulwark_session` when BULWARK_ALLOW_HTTP=1 and the public URL is plain http (a `__Host-` cookie
 * needs Secure, which such a deployment cannot set). http://localhost development keeps `__Host-`:
 * browsers treat localhost as a secure context.
 */
export function sessionCookieName(config: Pick<Config, 'publicUrl' | 'allowHttp'>): string {
  const https = config.publicUrl.toLowerCase().startsWith('https://')
  return !https && config.allowHttp ? 'bulwark_session' : '__Host-bulwark_session'
}

/** The first value of cookie `name` in a Cookie header, exactly as sent (undefined when absent or empty). */
export function readCookie(header: string | null, name: string): string | undefined {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i < 0) continue
    if (part.slice(0, i).trim() === name) {
      const v = part.slice(i + 1).trim()
      return v === '' ? undefined : v
    }
  }
  return undefined
}

/** The CSRF token for a session binding: HMAC-SHA256 under the CSRF key, base64url. */
export const csrfToken = (key: Buffer, sessionBinding: string): string => hashToken(key, `bulwark-csrf-v1.${sessionBinding}`)

/** The CSRF token for a raw session cookie value (bound to it through its keyed hash). */
export const csrfTokenFor = (keys: Pick<Keys, 'csrf'>, cookieValue: string): string => csrfToken(keys.csrf, hashToken(keys.csrf, cookieValue))

/** The origin (scheme://host[:port]) of a URL. */
const originOf = (url: string): string => new URL(url).origin

export interface CsrfDeps {
  config: Pick<Config, 'publicUrl' | 'allowHttp' | 'corsOrigins'>
  keys: Pick<Keys, 'csrf'>
  audit: Pick<AuditService, 'record'>
}


/** The global CSRF plugin plus `GET /v1/auth/csrf`. */
export function csrfPlugin(deps: CsrfDeps) {
  const { config, keys, audit } = deps
  const cookieName = sessionCookieName(config)
  const trustedOrigins = new Set([originOf(config.publicUrl), ...config.corsOrigins.map((o) => o.replace(/\/+$/, ''))])

  /** True when the browser says the request comes from our own origin or a configured one. */
  const originTrusted = (request: Request): boolean => {
    const site = request.headers.get('sec-fetch-site')
    if (site === 'same-origin' || site === 'none') return true
    const origin = request.headers.get('origin')
    return origin !== null && trustedOrigins.has(origin)
  }

  /** True when the request carries any browser signal of a cross-site context. */
  const crossSiteSignal = (request: Request): boolean => {
    const site = request.headers.get('sec-fetch-site')
    const origin = request.headers.get('origin')
    return (site !== null && site !== 'same-origin' && site !== 'none') || (origin !== null && !trustedOrigins.has(origin))
  }

  // The event is written before the 403 is answered (a reader of the security log right after sees it).
  const refuse = async (request: Request, path: string, reason: string): Promise<never> => {
    await audit.record({ type: 'csrf_failed', outcome: 'failure', details: { reason, method: request.method, path } }, metaOf(request))
    throw new AppError(403, 'csrf_failed', 'Cross-site request refused: send the X-CSRF-Token from GET /v1/auth/csrf, from an allowed origin.')
  }

  return new Elysia({ name: 'csrf' })
    .onRequest(async ({ request }) => {
      if (!UNSAFE.has(request.method)) return
      const path = pathOf(request.url)
      if (SESSION_START_PATHS.has(path)) {
        if (crossSiteSignal(request) && !originTrusted(request)) await refuse(request, path, 'login_origin')
        return
      }
      if (request.headers.has('authorization')) return
      const cookie = readCookie(request.headers.get('cookie'), cookieName)
      if (cookie === undefined) return
      if (!originTrusted(request)) await refuse(request, path, 'origin')
      const token = request.headers.get('x-csrf-token')
      if (!token) await refuse(request, path, 'missing_token')
      if (!safeEqual(token!, csrfTokenFor(keys, cookie))) await refuse(request, path, 'bad_token')
    })
    .get(
      '/v1/auth/csrf',
      ({ request }) => {
        const cookie = readCookie(request.headers.get('cookie'), cookieName)
        if (cookie === undefined) throw new AppError(401, 'unauthorized', 'No session cookie: sign in with "transport": "cookie" first.')
        return { csrfToken: csrfTokenFor(keys, cookie) }
      },
      {
        response: { 200: t.Object({ csrfToken: t.String({ description: 'send as X-CSRF-Token on POST, PUT, PATCH and DELETE' }) }), ...errors(401) },
        detail: {
          tags: ['auth'],
          summary: 'CSRF token for the current cookie session',
          description:
            'Cookie sessions only. The token is bound to the session cookie; the cookie rotates on every refresh, so fetch a new token after POST /v1/auth/refresh. Bearer clients need no token.',
        },
      },
    )
}
