/**
 * Request id and client address, computed once per request in `onRequest` (before anything can fail)
 * and kept in a WeakMap keyed by the Request, so the error handler, logs and services all see the same values.
 * X-Request-Id is echoed only when it is well-formed (no log injection), else a UUIDv7 is generated.
 */
import { Elysia } from 'elysia'
import { AppError } from '../lib/errors'
import { clientIp, cidrMatcher } from '../lib/ip'

export interface RequestContext {
  requestId: string
  ip: string
  userAgent: string | undefined
  start: number
  /** Set by the auth macro once the caller is known; read by the access log. */
  userId?: string
  /** Route pattern, set by the access log. */
  route?: string
  /** The body as the body parser read it (src/plugins/body-parser.ts), so a retry can send it again (storage-retry). */
  bodyBytes?: Uint8Array
}

const contexts = new WeakMap<Request, RequestContext>()
const injectedPeers = new WeakMap<Request, string>()

/** Test hook: the socket peer address a request "came from" when driven through `app.handle()` (no socket there). */
export function setPeer(request: Request, ip: string): void {
  injectedPeers.set(request, ip)
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/

/** The context of a request; creates a fallback one for requests that bypassed onRequest. */
export function contextOf(request: Request): RequestContext {
  let c = contexts.get(request)
  if (!c) {
    c = { requestId: Bun.randomUUIDv7(), ip: injectedPeers.get(request) ?? 'unknown', userAgent: undefined, start: performance.now() }
    contexts.set(request, c)
  }
  return c
}

/** Request metadata in the form services take. */
export const metaOf = (request: Request) => {
  const c = contextOf(request)
  return { ip: c.ip, userAgent: c.userAgent, requestId: c.requestId }
}

/** True for a path (of an absolute URL) longer than `/` that ends in `/` or holds `//`; no allocation. */
export function oddPath(url: string): boolean {
  const start = url.indexOf('/', url.indexOf('//') + 2)
  if (start < 0) return false
  let end = url.indexOf('?', start)
  if (end < 0) end = url.length
  if (end - start <= 1) return false
  if (url.charCodeAt(end - 1) === 47) return true
  const dbl = url.indexOf('//', start)
  return dbl >= 0 && dbl < end
}

export function requestContext(trustProxy: string[]) {
  const trusted = cidrMatcher(trustProxy)
  return new Elysia({ name: 'request-context' })
    .onRequest(({ request, set, server }) => {
      const incoming = request.headers.get('x-request-id')
      const peer = injectedPeers.get(request) ?? server?.requestIP(request)?.address
      const ua = request.headers.get('user-agent') ?? undefined
      const ctx: RequestContext = {
        requestId: incoming && REQUEST_ID.test(incoming) ? incoming : Bun.randomUUIDv7(),
        ip: clientIp(peer, request.headers.get('x-forwarded-for'), trusted),
        userAgent: ua?.slice(0, 512),
        start: performance.now(),
      }
      contexts.set(request, ctx)
      set.headers['x-request-id'] = ctx.requestId
      // One spelling per route: Elysia would also route `/v1/auth/login/`, and per-route rules keyed by
      // path (rate limits, login CSRF) must not be skipped by a trailing slash.
      if (oddPath(request.url)) throw new AppError(404, 'not_found', 'No such route.')
    })
    .derive({ as: 'global' }, ({ request, route }) => {
      const reqCtx = contextOf(request)
      reqCtx.route = route
      return { reqCtx }
    })
}
