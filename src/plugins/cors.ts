/**
 * CORS (https://fetch.spec.whatwg.org/#http-cors-protocol) for exact origins only.
 *
 * Written here rather than with @elysiajs/cors 1.4.2 because that plugin cannot be configured to do this:
 * it sets `Access-Control-Allow-Credentials`, `-Allow-Headers` and `-Expose-Headers` on every response
 * (disallowed origins included, through `app.headers()`), answers every preflight with 204 and the
 * requested method whatever the origin, and also matches a configured origin against the Origin with its
 * scheme stripped (so `http://` would pass for an `https://` entry).
 *
 * Behaviour: an Origin that equals one of BULWARK_CORS_ORIGINS is echoed with credentials allowed and
 * the rate-limit and request-id headers exposed; any other Origin gets no CORS header at all. A preflight
 * from an allowed origin is answered here (204, methods and headers listed explicitly, cached 10 minutes);
 * one from another origin falls through to the router (404, no CORS headers), which the browser refuses.
 * With no origins configured the plugin does nothing. `Vary: Origin` is sent on every response once
 * origins are configured, so a shared cache never hands one origin's answer to another.
 */
import { Elysia } from 'elysia'

export const CORS_METHODS = 'GET, POST, PUT, PATCH, DELETE'
export const CORS_ALLOW_HEADERS = 'Authorization, Content-Type, X-CSRF-Token, X-Request-Id'
export const CORS_EXPOSE_HEADERS = 'X-Request-Id, RateLimit, RateLimit-Policy, Retry-After'
export const CORS_MAX_AGE = 600

/** The global CORS plugin for the given exact origins (scheme://host[:port], no path). */
export function corsPlugin(origins: readonly string[]) {
  const allowed = new Set(origins.map((o) => o.replace(/\/+$/, '')))
  const app = new Elysia({ name: 'cors' })
  if (allowed.size === 0) return app
  return app.onRequest(({ request, set }) => {
    set.headers.vary = 'Origin'
    const origin = request.headers.get('origin')
    if (origin === null || !allowed.has(origin)) return
    set.headers['access-control-allow-origin'] = origin
    set.headers['access-control-allow-credentials'] = 'true'
    if (request.method === 'OPTIONS' && request.headers.has('access-control-request-method')) {
      set.headers.vary = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers'
      set.headers['access-control-allow-methods'] = CORS_METHODS
      set.headers['access-control-allow-headers'] = CORS_ALLOW_HEADERS
      set.headers['access-control-max-age'] = String(CORS_MAX_AGE)
      set.status = 204
      return new Response(null, { status: 204 })
    }
    set.headers['access-control-expose-headers'] = CORS_EXPOSE_HEADERS
  })
}
