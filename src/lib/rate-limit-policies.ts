/**
 * The rate-limit policy table: the global tiers and the stricter limits of sensitive routes.
 * Each policy has its own counter; its name is what the `RateLimit-Policy` header and
 * BULWARK_RATE_LIMIT_ROUTES use. Defaults follow OWASP's advice to throttle authentication
 * endpoints far below general traffic.
 */
const MIN = 60_000
const HOUR = 3_600_000

/** Where a route rule takes its key from. */
export type KeySource =
  /** the client IP (IPv6 grouped by /64) */
  | 'ip'
  /** the normalised `email` of the JSON body (the account being attacked) */
  | 'email'
  /** the `mfaToken` of the JSON body (one half-finished sign-in) */
  | 'mfaToken'
  /** the authenticated caller (falls back to the IP for anonymous callers) */
  | 'user'
  /** only through `RateLimiter.enforce` from a service */
  | 'service'

export interface RoutePolicyDefault {
  name: string
  limit: number
  windowMs: number
  by: KeySource
}

/** Default route policies, by name. */
export const ROUTE_POLICY_DEFAULTS = {
  'login-ip': { name: 'login-ip', limit: 10, windowMs: MIN, by: 'ip' },
  'login-account': { name: 'login-account', limit: 20, windowMs: MIN, by: 'email' },
  'register-ip': { name: 'register-ip', limit: 5, windowMs: HOUR, by: 'ip' },
  'forgot-ip': { name: 'forgot-ip', limit: 3, windowMs: HOUR, by: 'ip' },
  'forgot-account': { name: 'forgot-account', limit: 3, windowMs: HOUR, by: 'email' },
  'mfa-token': { name: 'mfa-token', limit: 5, windowMs: 5 * MIN, by: 'mfaToken' },
  'mfa-account': { name: 'mfa-account', limit: 5, windowMs: 5 * MIN, by: 'service' },
  'passkey-ip': { name: 'passkey-ip', limit: 30, windowMs: MIN, by: 'ip' },
  'authz-user': { name: 'authz-user', limit: 6000, windowMs: MIN, by: 'user' },
} as const satisfies Record<string, RoutePolicyDefault>

export type RoutePolicyName = keyof typeof ROUTE_POLICY_DEFAULTS

/**
 * Development defaults of the route policies: a developer's scripts re-register, reset and sign in far
 * more often than a person does, and (with the one-minute penalty cap of the development profile) an
 * overrun costs at most a minute. `test` and `production` keep ROUTE_POLICY_DEFAULTS.
 * BULWARK_RATE_LIMIT_ROUTES overrides both.
 */
export const DEVELOPMENT_ROUTE_LIMITS: Partial<Record<RoutePolicyName, { limit: number; windowMs: number }>> = {
  'login-ip': { limit: 120, windowMs: MIN },
  'login-account': { limit: 60, windowMs: MIN },
  'register-ip': { limit: 120, windowMs: MIN },
  'forgot-ip': { limit: 30, windowMs: MIN },
  'forgot-account': { limit: 10, windowMs: MIN },
  'mfa-token': { limit: 20, windowMs: MIN },
  'mfa-account': { limit: 20, windowMs: MIN },
  'passkey-ip': { limit: 120, windowMs: MIN },
}

/** The route-limit defaults of a profile (BULWARK_ENV), before BULWARK_RATE_LIMIT_ROUTES. */
export const profileRouteLimits = (profile: 'development' | 'test' | 'production'): Record<string, { limit: number; windowMs: number }> =>
  profile === 'development' ? { ...DEVELOPMENT_ROUTE_LIMITS } : {}

export const ROUTE_POLICY_NAMES = Object.keys(ROUTE_POLICY_DEFAULTS) as RoutePolicyName[]

/** Which policies guard which route, checked in order (the IP first, so a blocked IP costs nothing more). */
export const ROUTE_LIMITS: Record<string, readonly RoutePolicyName[]> = {
  'POST /v1/auth/login': ['login-ip', 'login-account'],
  'POST /v1/auth/register': ['register-ip'],
  'POST /v1/auth/password/forgot': ['forgot-ip', 'forgot-account'],
  'POST /v1/auth/mfa/verify': ['mfa-token'],
  'POST /v1/auth/passkey/options': ['passkey-ip'],
  'POST /v1/authz/check': ['authz-user'],
}

/** Paths never limited: probes, scrapers and the docs must work while a client is blocked. */
export const isExemptPath = (path: string): boolean =>
  path.startsWith('/health/') || path === '/health' || path === '/metrics' || path === '/docs' || path.startsWith('/docs/')
