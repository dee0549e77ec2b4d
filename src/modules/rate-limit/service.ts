/**
 * The rate-limit engine behind the HTTP plugin and the services: picks the policy, counts the hit in the
 * shared store, refuses with a 429 problem (and the draft's headers), and records one `rate_limited`
 * security event per block. Knows nothing of Elysia: the plugin hands it plain keys.
 *
 * Headers follow draft-ietf-httpapi-ratelimit-headers-11 (RateLimit header fields for HTTP,
 * https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/11/): `RateLimit-Policy` lists
 * each policy as a quoted name with `q` (quota) and `w` (window seconds); `RateLimit` gives `r`
 * (remaining) and `t` (seconds until the quota resets). The older `RateLimit-Limit/Remaining/Reset`
 * trio of the most constrained policy is kept for clients written against earlier drafts.
 */
import type { CoreDeps } from '../../deps'
import { hashToken } from '../../lib/crypto'
import { AppError } from '../../lib/errors'
import { cidrMatcher } from '../../lib/ip'
import { ROUTE_POLICY_DEFAULTS, type RoutePolicyName } from '../../lib/rate-limit-policies'
import { MemoryStore, RedisStore, ResilientStore, type RateLimitStore } from '../../lib/rate-limit-store'
import type { Redis } from '../../lib/redis'
import type { AuditService, RequestMeta } from '../audit/service'

const MIN = 60_000

export interface Policy {
  name: string
  limit: number
  windowMs: number
}

/** One policy's state after a request, for the response headers. */
export interface AppliedLimit {
  policy: Policy
  remaining: number
  resetAt: number
}

/** Who the caller is, as far as rate limiting cares: the lead's JWT check supplies it. */
export interface RateLimitIdentity {
  userId: string
  /** Highest role level of the user. */
  level: number
}

export interface ConsumeContext {
  /** Policies already applied to this request; the refusal's headers include them. */
  applied?: AppliedLimit[]
  route?: string
  meta?: RequestMeta
  actorId?: string
}

type Deps = Pick<CoreDeps, 'config' | 'clock' | 'logger' | 'keys'> & { audit: AuditService; redis?: Redis }

/** Normalises an email for keying: NFKC, trimmed, lower-cased (the same account however it is typed). */
export const normalizeEmail = (s: string): string => s.normalize('NFKC').trim().toLowerCase()

export class RateLimitService {
  readonly enabled: boolean
  readonly store: RateLimitStore
  /** Present when Redis is configured: its breaker state says which store answers. */
  readonly resilient: ResilientStore | undefined
  private readonly allowlisted: (ip: string) => boolean
  private readonly policies: Record<RoutePolicyName, Policy>
  private readonly tiers: { ip: Policy; user: Policy; moderator: Policy; admin: Policy }

  constructor(private readonly deps: Deps) {
    const rl = deps.config.rateLimit
    this.enabled = rl.enabled
    this.allowlisted = cidrMatcher(rl.allowlist)
    this.tiers = {
      ip: { name: 'ip', limit: rl.anonPerMin, windowMs: MIN },
      user: { name: 'user', limit: rl.userPerMin, windowMs: MIN },
      moderator: { name: 'moderator', limit: rl.moderatorPerMin, windowMs: MIN },
      admin: { name: 'admin', limit: rl.adminPerMin, windowMs: MIN },
    }
    this.policies = Object.fromEntries(
      Object.values(ROUTE_POLICY_DEFAULTS).map((d) => {
        const o = rl.routes[d.name]
        return [d.name, { name: d.name, limit: o?.limit ?? d.limit, windowMs: o?.windowMs ?? d.windowMs }]
      }),
    ) as Record<RoutePolicyName, Policy>
    const penalty = { maxMs: rl.penaltyMaxMs, decayMs: rl.penaltyDecayMs }
    const memory = new MemoryStore(penalty, rl.maxKeys)
    if (deps.redis) {
      this.resilient = new ResilientStore(new RedisStore(deps.redis, penalty, `${deps.config.redis.prefix}rl:`), memory, deps.clock, (to, from, err) => {
        if (to === 'open') {
          deps.logger.warn({ err: err instanceof Error ? err.message : undefined, from }, 'rate-limit store: Redis failing, using in-memory counters')
          void deps.audit.record({ type: 'rate_limit_store_degraded', outcome: 'failure', details: { from, to } })
        } else if (to === 'closed') {
          deps.logger.info({ from }, 'rate-limit store: Redis answers again, shared counters restored')
          void deps.audit.record({ type: 'rate_limit_store_restored', outcome: 'info', details: { from, to } })
        }
      })
      this.store = this.resilient
    } else {
      this.resilient = undefined
      this.store = memory
    }
  }

  /** A sensitive-route policy with its configured limit. */
  policy(name: RoutePolicyName): Policy {
    return this.policies[name]
  }

  /** The global policy of a caller: per IP when anonymous, else by the user's highest role level. */
  globalPolicy(identity?: RateLimitIdentity): Policy {
    if (!identity) return this.tiers.ip
    if (identity.level >= 90) return this.tiers.admin
    if (identity.level >= 50) return this.tiers.moderator
    return this.tiers.user
  }

  isAllowlisted(ip: string): boolean {
    return this.allowlisted(ip)
  }

  /** Keyed hash of an account name or token: Redis and memory never hold emails or live tokens. */
  secretKey(value: string): string {
    return hashToken(this.deps.keys.tokenHash, value.slice(0, 1024)).slice(0, 24)
  }

  /** Counts one request against `policy` for `key`; throws the 429 problem when refused. */
  async consume(policy: Policy, key: string, ctx: ConsumeContext = {}): Promise<AppliedLimit> {
    const now = this.deps.clock.now()
    const r = await this.store.hit(`${policy.name}:${key}`, policy.limit, policy.windowMs, now)
    const applied: AppliedLimit = { policy, remaining: r.remaining, resetAt: r.resetAt }
    if (r.allowed) return applied
    const retryAfter = Math.max(1, Math.ceil((r.resetAt - now) / 1000))
    if (r.newBlock) {
      await this.deps.audit.record(
        { type: 'rate_limited', outcome: 'failure', actorId: ctx.actorId ?? null, details: { policy: policy.name, route: ctx.route, level: r.level, blockSeconds: retryAfter } },
        ctx.meta,
      )
    }
    const headers = this.headers([...(ctx.applied ?? []).filter((a) => a.policy.name !== policy.name), applied], now)
    headers['retry-after'] = String(retryAfter)
    throw new AppError(429, 'rate_limited', `Too many requests; retry in ${retryAfter} seconds.`, { headers })
  }

  /**
   * For services: counts one attempt of a route policy (e.g. `enforce('mfa-account', userId)` before
   * checking a second factor) and throws the 429 problem when the key is blocked. No-op when disabled.
   */
  async enforce(name: RoutePolicyName, key: string, meta?: RequestMeta): Promise<void> {
    if (!this.enabled) return
    await this.consume(this.policy(name), this.secretKey(key), { meta, route: name })
  }

  /** The draft's headers (and the legacy trio) for the policies applied to one response. */
  headers(applied: AppliedLimit[], now = this.deps.clock.now()): Record<string, string> {
    if (applied.length === 0) return {}
    const secs = (ms: number) => Math.max(0, Math.ceil(ms / 1000))
    let tightest = applied[0]!
    for (const a of applied) if (a.remaining / a.policy.limit <= tightest.remaining / tightest.policy.limit) tightest = a
    return {
      'ratelimit-policy': applied.map((a) => `"${a.policy.name}";q=${a.policy.limit};w=${secs(a.policy.windowMs)}`).join(', '),
      ratelimit: applied.map((a) => `"${a.policy.name}";r=${a.remaining};t=${secs(a.resetAt - now)}`).join(', '),
      'ratelimit-limit': String(tightest.policy.limit),
      'ratelimit-remaining': String(tightest.remaining),
      'ratelimit-reset': String(secs(tightest.resetAt - now)),
    }
  }

  /** Forgets one key of a policy (admin tools, tests). */
  reset(policy: Policy, key: string): Promise<void> {
    return this.store.reset(`${policy.name}:${key}`)
  }
}
