/**
 * Rate limiting, in two hooks:
 * - `onRequest` (before routing, parsing or any work): one global counter per caller, by client IP
 *   (IPv6 by /64) for anonymous callers, or by user with a limit chosen by the highest role level;
 * - `onTransform` (after the body is parsed, before validation and the handler): the stricter
 *   per-route policies of sensitive endpoints, keyed by IP and by the account the body names.
 * Every hit counts, failed ones included (a wrong password is what is being limited); a refused key
 * gets a 429 before any hashing or database query. Our own plugin rather than elysia-rate-limit:
 * see the README's "Rate limiting" section for why.
 */
import { Elysia } from 'elysia'
import { AppError } from '../lib/errors'
import { ipKey } from '../lib/ip'
import { isExemptPath, ROUTE_LIMITS, ROUTE_POLICY_DEFAULTS, type KeySource } from '../lib/rate-limit-policies'
import { normalizeEmail, type AppliedLimit, type RateLimitIdentity, type RateLimitService } from '../modules/rate-limit/service'
import { contextOf, metaOf } from './request-context'
import { isStorageRetry } from './storage-retry'

/**
 * Tells the limiter who is calling, cheaply (e.g. a verified Bearer token, cached per request);
 * `undefined` means anonymous. Supplied by the auth layer so this plugin does not depend on it.
 */
export type RateLimitIdentityFn = (request: Request) => RateLimitIdentity | undefined | Promise<RateLimitIdentity | undefined>

interface State {
  applied: AppliedLimit[]
  identity: RateLimitIdentity | undefined
}

const states = new WeakMap<Request, State>()

function pathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('//') + 2)
  if (start < 0) return '/'
  const q = url.indexOf('?', start)
  const h = url.indexOf('#', start)
  const end = Math.min(q < 0 ? url.length : q, h < 0 ? url.length : h)
  return url.slice(start, end)
}

function bodyField(body: unknown, field: string): string | undefined {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return undefined
  const v = (body as Record<string, unknown>)[field]
  return typeof v === 'string' && v.length > 0 ? v : undefined
}

export function rateLimit(limiter: RateLimitService, identify?: RateLimitIdentityFn) {
  const plugin = new Elysia({ name: 'rate-limit' })
  if (!limiter.enabled) return plugin

  const keyOf = (by: KeySource, request: Request, body: unknown, s: State): string | undefined => {
    switch (by) {
      case 'ip':
        return ipKey(contextOf(request).ip)
      case 'email': {
        const email = bodyField(body, 'email')
        return email === undefined ? undefined : limiter.secretKey(normalizeEmail(email))
      }
      case 'mfaToken': {
        const token = bodyField(body, 'mfaToken')
        return token === undefined ? undefined : limiter.secretKey(token)
      }
      case 'user':
        return s.identity ? `u:${s.identity.userId}` : ipKey(contextOf(request).ip)
      default:
        return undefined
    }
  }

  // Keeps the response headers in step with every policy applied so far, refused one included.
  const consume = async (s: State, set: { headers: Record<string, unknown> }, run: () => Promise<AppliedLimit>) => {
    try {
      s.applied.push(await run())
    } catch (err) {
      if (err instanceof AppError && err.extra?.headers) Object.assign(set.headers, err.extra.headers)
      throw err
    }
    Object.assign(set.headers, limiter.headers(s.applied))
  }

  return plugin
    .onRequest(async ({ request, set }) => {
      const path = pathOf(request.url)
      const ctx = contextOf(request)
      // A re-run after a held database lock (storage-retry.ts) was counted on its first attempt.
      if (isExemptPath(path) || limiter.isAllowlisted(ctx.ip) || isStorageRetry(request)) return
      let identity: RateLimitIdentity | undefined
      try {
        identity = identify ? await identify(request) : undefined
      } catch {
        identity = undefined // a token that cannot be checked is simply anonymous here; auth refuses it later
      }
      const s: State = { applied: [], identity }
      states.set(request, s)
      const policy = limiter.globalPolicy(identity)
      const key = identity ? `u:${identity.userId}` : ipKey(ctx.ip)
      await consume(s, set, () => limiter.consume(policy, key, { applied: s.applied, route: path, meta: metaOf(request), actorId: identity?.userId }))
    })
    .onTransform({ as: 'global' }, async ({ request, body, set }) => {
      const s = states.get(request)
      if (!s) return
      const path = pathOf(request.url)
      const names = ROUTE_LIMITS[`${request.method} ${path}`]
      if (!names) return
      for (const name of names) {
        const key = keyOf(ROUTE_POLICY_DEFAULTS[name].by, request, body, s)
        if (key === undefined) continue
        const policy = limiter.policy(name)
        await consume(s, set, () => limiter.consume(policy, key, { applied: s.applied, route: path, meta: metaOf(request), actorId: s.identity?.userId }))
      }
    })
}
