/**
 * Authentication: turns `Authorization: Bearer <access JWT>` into a principal. The token is verified
 * once per request (memoised on the request context), and its signature once per token while it lives
 * (src/lib/verified-token-cache.ts: exact token string, expiry and signing key checked on every use); then the session (revoked, idle or absolute
 * limit), the user's status and effective permissions are checked on every request through caches that
 * changes clear synchronously (the Invalidation bus), so a revoked session, a disabled user or a
 * withdrawn permission fails on the very next request, not at token expiry.
 *
 * Every 401 carries an RFC 6750 §3 challenge: `Bearer realm="bulwark"` when no bearer token was sent,
 * with `error="invalid_token"` when one was sent and is not valid. All invalid tokens get one and the same
 * answer, whatever the reason (signature, expiry, audience, kid, ended session, disabled account).
 */
import { decodeProtectedHeader } from 'jose'
import { invalidToken, tokenRequired, type AccessClaims, type ClientAccessClaims, type KeyService } from '../modules/keys/service'
import type { Effective } from '../modules/rbac/service'
import type { SessionRow, SessionService } from '../modules/sessions/service'
import { noteDenial } from '../modules/audit/denials'
import { authMacros, type Principal } from './auth-macros'
import { AppError } from '../lib/errors'
import { pathOf } from '../lib/request-url'
import { looksLikeApiKey } from '../modules/apikeys/format'
import type { ApiKeyAuth } from '../modules/apikeys/service'
import { contextOf } from './request-context'
import type { Clock } from '../lib/clock'
import { VerifiedTokenCache } from '../lib/verified-token-cache'

export type { Principal }

/** A principal with the session row it came from (for logout and step-up). */
export interface SessionPrincipal extends Principal {
  session: SessionRow
}

export interface AuthenticatorDeps {
  signer: KeyService
  sessions: SessionService
  /** Effective roles, level, permissions and status (cached by the RBAC service). */
  access(userId: string): Promise<Effective | null>
  /** An OAuth client's status and permissions (src/modules/clients); absent: client tokens are refused. */
  clientAccess?(clientId: string): Promise<{ status: 'active' | 'disabled'; roles: string[]; level: number; permissions: readonly string[] } | null>
  /** Resolves `Bearer bwk_…` API keys (absent: such tokens are simply invalid). */
  apiKeys?: { authenticate(token: string): Promise<ApiKeyAuth | undefined> }
  /**
   * The clock the signer verifies with; with it, verified tokens are cached (the signature is checked once
   * per token, expiry on every use). Without it every request verifies the signature.
   */
  clock?: Clock
  /** Most tokens kept verified (default VERIFIED_TOKEN_CACHE_MAX, 20,000; 0 turns the cache off). */
  tokenCacheMax?: number
}

type TokenKind = 'user' | 'client'

/** What the authenticator reads of a verified user token (all the cache keeps of it). */
type UserClaims = Pick<AccessClaims, 'sub' | 'sid' | 'iat' | 'exp'>
/** What the authenticator reads of a verified client-credentials token. */
type ClientClaims = Pick<ClientAccessClaims, 'sub' | 'client_id' | 'scope' | 'iat' | 'exp'>

/**
 * Routes that change credentials refuse API-key callers (403 `api_key_not_allowed`): a leaked key must
 * not be able to change the password, second factors, sessions or API keys, nor end or mint sessions.
 */
const CREDENTIAL_ROUTES = /^\/v1\/(?:me\/(?:password|reauthenticate|mfa|passkeys|sessions|api-keys)(?:\/|$)|api-keys(?:\/|$)|auth\/|users\/[^/]+\/(?:sessions|mfa)(?:\/|$))/

export const apiKeyNotAllowed = () => new AppError(403, 'api_key_not_allowed', 'This route changes credentials and does not accept API keys; sign in instead.')

declare module './request-context' {
  interface RequestContext {
    principal?: Promise<SessionPrincipal>
    anyPrincipal?: Promise<Principal>
  }
}

const BEARER = /^bearer ([A-Za-z0-9_.~+/-]+=*)$/i

/** True when a bearer token's header says it is a client-credentials token (RFC 9068 `typ: at+jwt`). */
function isClientToken(token: string): boolean {
  try {
    const typ = decodeProtectedHeader(token).typ
    return typeof typ === 'string' && /^(application\/)?at\+jwt$/i.test(typ)
  } catch {
    return false
  }
}

/** The `kid` of a token the signer has just accepted (so its header is well-formed). */
function kidOf(token: string): string | undefined {
  try {
    const kid = decodeProtectedHeader(token).kid
    return typeof kid === 'string' ? kid : undefined
  } catch {
    return undefined
  }
}

export class Authenticator {
  /** Tokens already verified (absent without a clock, or with `tokenCacheMax: 0`). */
  readonly tokens: VerifiedTokenCache<UserClaims | ClientClaims> | undefined

  constructor(private readonly d: AuthenticatorDeps) {
    const clock = d.clock
    this.tokens = clock && d.tokenCacheMax !== 0 ? new VerifiedTokenCache(() => clock.now(), d.tokenCacheMax) : undefined
  }

  /**
   * The claims of `token` verified as `kind`: from the cache when this exact token was verified before, is
   * inside its lifetime now and its key still verifies; otherwise by the signer (and then cached).
   */
  private async verified(token: string, kind: 'user'): Promise<UserClaims>
  private async verified(token: string, kind: 'client'): Promise<ClientClaims>
  private async verified(token: string, kind: TokenKind): Promise<UserClaims | ClientClaims> {
    const cache = this.tokens
    if (cache) {
      // The keys that verify now (the signer's own view, with its rotation sync and retirement times).
      cache.retainKids((await this.d.signer.jwks()).keys.map((k) => k.kid!))
      const hit = cache.get(token)
      if (hit && hit.kind === kind) return hit.claims
    }
    let claims: UserClaims | ClientClaims
    if (kind === 'user') {
      const c = await this.d.signer.verify(token)
      claims = { sub: c.sub, sid: c.sid, iat: c.iat, exp: c.exp }
    } else {
      const c = await this.d.signer.verifyClient(token)
      claims = { sub: c.sub, client_id: c.client_id, scope: c.scope, iat: c.iat, exp: c.exp }
    }
    if (cache) {
      const kid = kidOf(token)
      if (kid !== undefined) cache.set(token, kind, kid, claims)
    }
    return claims
  }

  /** The caller of a request, verified once per request; 401 `unauthorized` (no token) or `invalid_token` otherwise. */
  authenticate(request: Request): Promise<SessionPrincipal> {
    const ctx = contextOf(request)
    ctx.principal ??= this.resolve(request)
    return ctx.principal
  }

  /**
   * The caller, a user or an OAuth client (client-credentials token: permissions only, no session; the
   * client must still exist and be active, and each permission must be in the token's `scope` too).
   */
  authenticateAny(request: Request): Promise<Principal> {
    const ctx = contextOf(request)
    ctx.anyPrincipal ??= (async () => {
      if (!this.d.clientAccess) return await this.authenticate(request)
      const header = request.headers.get('authorization')
      const token = header ? BEARER.exec(header)?.[1] : undefined
      // A token seen before is known to be one kind or the other without decoding its header again.
      const known = token === undefined ? undefined : this.tokens?.peek(token)?.kind
      if (token === undefined || (known !== undefined ? known !== 'client' : !isClientToken(token))) return await this.authenticate(request)
      const claims = await this.verified(token, 'client')
      const access = await this.d.clientAccess!(claims.client_id)
      if (!access || access.status !== 'active') {
        noteDenial(request, 'account_inactive')
        throw invalidToken()
      }
      const scope = new Set(claims.scope.split(' '))
      ctx.userId = claims.client_id
      const principal: Principal = {
        userId: claims.client_id,
        clientId: claims.client_id,
        sessionId: '',
        level: access.level,
        permissions: access.permissions.filter((p) => scope.has(p)),
        roles: access.roles,
        amr: [],
        authTime: claims.iat * 1000,
        mfaPending: false,
      }
      return principal
    })()
    return ctx.anyPrincipal
  }

  private resolveApiKey(request: Request, token: string): Promise<SessionPrincipal> {
    return apiKeyPrincipal(this.d, request, token)
  }

  private async resolve(request: Request): Promise<SessionPrincipal> {
    const header = request.headers.get('authorization')
    // RFC 6750 §2.1: the scheme is case-insensitive; anything else (no header, Basic …) is "no token sent".
    if (!header || !/^bearer /i.test(header)) {
      if (header) noteDenial(request, 'malformed_authorization')
      throw tokenRequired()
    }
    const m = BEARER.exec(header)
    if (!m) {
      noteDenial(request, 'malformed_authorization')
      throw invalidToken()
    }
    if (looksLikeApiKey(m[1]!)) return this.resolveApiKey(request, m[1]!)
    const claims = await this.verified(m[1]!, 'user')
    const session = await this.d.sessions.getLive(claims.sid)
    if (!session || session.userId !== claims.sub) {
      noteDenial(request, 'session_ended')
      throw invalidToken()
    }
    const access = await this.d.access(claims.sub)
    if (!access || access.status !== 'active') {
      noteDenial(request, 'account_inactive')
      throw invalidToken()
    }
    await this.d.sessions.touch(session)
    const amr = session.amr.split(',')
    // Decided on every request, not only at sign-in: a role that starts requiring MFA (granted, or its flag
    // switched on) limits password-only sessions at once. Only a second factor proven in *this* session
    // (sign-in, step-up, or enrolment here) lifts the limit; enrolling elsewhere does not.
    const mfaPending = session.mfaPending || (access.mfaRequired && !amr.some((m) => m !== 'pwd'))
    contextOf(request).userId = claims.sub
    return {
      userId: claims.sub,
      sessionId: session.id,
      level: access.level,
      permissions: access.permissions,
      roles: access.roles,
      amr,
      authTime: session.authTime,
      mfaPending,
      session,
    }
  }
}

/** The principal of an API key: the owner, limited to the key's scope; no step-up (authTime 0), no session. */
async function apiKeyPrincipal(this: void, d: AuthenticatorDeps, request: Request, token: string): Promise<SessionPrincipal> {
  const a = d.apiKeys ? await d.apiKeys.authenticate(token) : undefined
  if (!a) {
    noteDenial(request, 'invalid_api_key')
    throw invalidToken()
  }
  if (CREDENTIAL_ROUTES.test(pathOf(request.url))) {
    noteDenial(request, 'api_key_not_allowed')
    throw apiKeyNotAllowed()
  }
  const amr = a.row.amr.split(',')
  contextOf(request).userId = a.row.userId
  const session: SessionRow = {
    id: `apikey:${a.row.id}`,
    userId: a.row.userId,
    createdAt: a.row.createdAt,
    lastSeenAt: a.row.lastUsedAt ?? a.row.createdAt,
    expiresAt: a.row.expiresAt ?? Number.MAX_SAFE_INTEGER,
    ip: null,
    userAgent: null,
    transport: 'bearer',
    amr: a.row.amr,
    authTime: 0,
    mfaPending: false,
    revokedAt: null,
    revokedReason: null,
  }
  return {
    userId: a.row.userId,
    sessionId: session.id,
    level: a.owner.level,
    permissions: a.permissions,
    roles: a.owner.roles,
    amr,
    authTime: 0,
    mfaPending: a.owner.mfaRequired && !amr.some((x) => x !== 'pwd'),
    apiKeyId: a.row.id,
    session,
  }
}

/** The route macros backed by the real authenticator. */
export const authPlugin = (authn: Authenticator) => authMacros((request) => authn.authenticateAny(request), 'auth')

export type AuthPlugin = ReturnType<typeof authPlugin>
