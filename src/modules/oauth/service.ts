/**
 * The OAuth 2.0 authorization server for service identities: client authentication (RFC 6749 §2.3.1
 * client_secret_basic / client_secret_post, RFC 7523 §2.2 private_key_jwt), the client-credentials grant
 * (RFC 6749 §4.4) issuing RFC 9068 access tokens, token introspection (RFC 7662), revocation (RFC 7009)
 * and the metadata document (RFC 8414). Introspection and revocation are dispatchers over token kinds:
 * `introspectors` / `revokers` are lists other modules (API keys) append to.
 */
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import type { CoreDeps } from '../../deps'
import type { KeyService } from '../keys/service'
import { CLIENT_TOKEN_TYP } from '../keys/service'
import type { SessionService } from '../sessions/service'
import type { Effective } from '../rbac/service'
import { ASSERTION_ALGS, AUTH_METHODS, type ClientsService } from '../clients/service'
import type { ClientRow } from '../clients/store'
import { ALL_PERMISSIONS } from '../../lib/permissions'
import { invalidClient, invalidRequest, OAuthError } from './errors'

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
/** Longest lifetime accepted for a client assertion (`exp - now`). */
export const MAX_ASSERTION_LIFETIME_S = 300

export type FormBody = Record<string, string>

/** RFC 7662 §2.2 response. */
export interface Introspection {
  active: boolean
  sub?: string
  client_id?: string
  scope?: string
  exp?: number
  iat?: number
  sid?: string
  token_type?: string
  iss?: string
  aud?: string
}

/**
 * One kind of token introspection knows: answers for a token it recognises, undefined otherwise (the next
 * one is asked). API keys plug in here (`oauth.introspectors.push(...)`).
 */
export interface Introspector {
  kind: string
  introspect(token: string, hint: string | undefined): Promise<Introspection | undefined>
}

/** One kind of token revocation knows: true when it recognised (and revoked) the token. */
export interface Revoker {
  kind: string
  revoke(token: string, hint: string | undefined): Promise<boolean>
}

export interface OAuthDeps extends Pick<CoreDeps, 'config' | 'clock'> {
  signer: KeyService
  sessions: SessionService
  clients: ClientsService
  /** A user's effective status (RBAC service). */
  userAccess(userId: string): Promise<Effective | null> | Effective | null
}

export interface AuthenticatedClient {
  row: ClientRow
  method: (typeof AUTH_METHODS)[number]
}

/** Decodes one side of HTTP Basic credentials: form-urlencoded per RFC 6749 §2.3.1. */
function formDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '))
  } catch {
    return undefined
  }
}

export class OAuthService {
  readonly introspectors: Introspector[] = []
  readonly revokers: Revoker[] = []

  constructor(private readonly deps: OAuthDeps) {
    this.introspectors.push(
      { kind: 'access_token', introspect: (t) => this.introspectUserToken(t) },
      { kind: 'client_access_token', introspect: (t) => this.introspectClientToken(t) },
      { kind: 'refresh_token', introspect: (t) => this.introspectRefreshToken(t) },
    )
    this.revokers.push({ kind: 'refresh_token', revoke: (t) => this.revokeRefreshToken(t) }, { kind: 'access_token', revoke: (t) => this.revokeUserToken(t) })
  }

  get issuer(): string {
    return this.deps.config.publicUrl
  }

  endpoint(path: string): string {
    return `${this.issuer.replace(/\/$/, '')}${path}`
  }

  /** RFC 8414 authorization server metadata; `oidc` adds what OpenID Provider metadata requires. */
  metadata(oidc: boolean): Record<string, unknown> {
    const methods = [...AUTH_METHODS]
    const m: Record<string, unknown> = {
      issuer: this.issuer,
      jwks_uri: this.endpoint('/.well-known/jwks.json'),
      token_endpoint: this.endpoint('/oauth/token'),
      introspection_endpoint: this.endpoint('/oauth/introspect'),
      revocation_endpoint: this.endpoint('/oauth/revoke'),
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: methods,
      token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
      introspection_endpoint_auth_methods_supported: methods,
      introspection_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
      revocation_endpoint_auth_methods_supported: methods,
      revocation_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
      scopes_supported: [...ALL_PERMISSIONS],
      // RFC 8414 §2: response_types_supported is REQUIRED; there is no authorization endpoint, so no code or token flow.
      response_types_supported: [],
    }
    if (oidc) {
      // OpenID Provider metadata (OIDC Discovery §3) requires a non-empty response_types_supported. There is no
      // authorization endpoint and no ID token: `none` (OAuth 2.0 Multiple Response Type Encoding Practices §4,
      // "no credentials are returned") is the one value that does not claim a flow that does not exist.
      m.response_types_supported = ['none']
      m.subject_types_supported = ['public']
      m.claims_supported = ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id', 'scope', 'sid']
    }
    return m
  }

  /**
   * Authenticates the client of a token, introspection or revocation request with exactly one method
   * (RFC 6749 §2.3: a client MUST NOT use more than one). Throws `invalid_client` (401) otherwise.
   */
  async authenticateClient(authorization: string | null, body: FormBody): Promise<AuthenticatedClient> {
    const basic = authorization !== null && /^basic /i.test(authorization)
    const usesPost = body.client_secret !== undefined
    const usesJwt = body.client_assertion !== undefined || body.client_assertion_type !== undefined
    if ([basic, usesPost, usesJwt].filter(Boolean).length > 1) throw invalidRequest('Use exactly one client authentication method.')
    if (authorization !== null && !basic) throw invalidClient(false)
    if (basic) {
      let decoded: string
      try {
        decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8')
      } catch {
        throw invalidClient(true)
      }
      const i = decoded.indexOf(':')
      const id = i < 0 ? undefined : formDecode(decoded.slice(0, i))
      const secret = i < 0 ? undefined : formDecode(decoded.slice(i + 1))
      if (!id || secret === undefined) throw invalidClient(true)
      if (body.client_id !== undefined && body.client_id !== id) throw invalidRequest('client_id differs from the authenticated client.')
      return await this.bySecret(id, secret, 'client_secret_basic', true)
    }
    if (usesPost) {
      if (!body.client_id) throw invalidClient(false)
      return await this.bySecret(body.client_id, body.client_secret!, 'client_secret_post', false)
    }
    if (usesJwt) return await this.byAssertion(body)
    throw invalidClient(false)
  }

  private async bySecret(id: string, secret: string, method: 'client_secret_basic' | 'client_secret_post', basic: boolean): Promise<AuthenticatedClient> {
    const row = await this.deps.clients.row(id)
    // The hash is computed whether or not the client exists, so timing says nothing about which ids exist.
    const ok = row ? this.deps.clients.secretMatches(row, secret) : (this.deps.clients.secretMatches(DUMMY, secret), false)
    if (!row || !ok || row.status !== 'active' || row.authMethod !== method) throw invalidClient(basic)
    return { row, method }
  }

  /** RFC 7523 §3: iss = sub = client_id, aud = the token endpoint or the issuer, a short exp, a jti never seen before. */
  private async byAssertion(body: FormBody): Promise<AuthenticatedClient> {
    if (body.client_assertion_type !== JWT_BEARER_ASSERTION || !body.client_assertion) throw invalidRequest(`client_assertion_type must be ${JWT_BEARER_ASSERTION} with a client_assertion.`)
    const assertion = body.client_assertion
    if (assertion.length > 8192) throw invalidClient(false)
    let sub: string | undefined
    try {
      const [, payload] = assertion.split('.')
      sub = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')).sub
    } catch {
      throw invalidClient(false)
    }
    if (typeof sub !== 'string' || (body.client_id !== undefined && body.client_id !== sub)) throw invalidClient(false)
    const row = await this.deps.clients.row(sub)
    if (!row || row.status !== 'active' || row.authMethod !== 'private_key_jwt' || !row.jwks) throw invalidClient(false)
    const now = this.deps.clock.now()
    let exp: number
    let jti: string
    try {
      const { payload } = await jwtVerify(assertion, createLocalJWKSet(JSON.parse(row.jwks) as JSONWebKeySet), {
        algorithms: [...ASSERTION_ALGS],
        issuer: row.id,
        subject: row.id,
        audience: [this.endpoint('/oauth/token'), this.issuer],
        requiredClaims: ['exp', 'jti'],
        currentDate: new Date(now),
        clockTolerance: 5,
      })
      exp = payload.exp!
      jti = payload.jti!
      if (exp * 1000 - now > MAX_ASSERTION_LIFETIME_S * 1000 || typeof jti !== 'string' || jti.length > 200) throw new Error('lifetime')
    } catch {
      throw invalidClient(false)
    }
    if (!(await this.deps.clients.rememberAssertion(row.id, jti, exp * 1000 + 5_000))) throw invalidClient(false)
    return { row, method: 'private_key_jwt' }
  }

  /** The token endpoint (RFC 6749 §4.4.2/§5.1). */
  async token(authorization: string | null, body: FormBody): Promise<{ access_token: string; token_type: 'Bearer'; expires_in: number; scope: string }> {
    const grant = body.grant_type
    if (!grant) throw invalidRequest('grant_type is required.')
    const client = await this.authenticateClient(authorization, body)
    if (grant !== 'client_credentials') throw new OAuthError('unsupported_grant_type', 'Only grant_type=client_credentials is supported.')
    const access = await this.deps.clients.access(client.row.id)
    if (!access || access.status !== 'active') throw invalidClient(client.method === 'client_secret_basic')
    let scopes: string[]
    if (body.scope === undefined || body.scope === '') scopes = access.permissions
    else {
      // RFC 6749 §3.3: space-delimited, case-sensitive; each must be held by the client.
      const asked = [...new Set(body.scope.split(' ').filter(Boolean))]
      if (asked.length > 200 || asked.some((s) => !/^[\x21\x23-\x5b\x5d-\x7e]{1,100}$/.test(s))) throw new OAuthError('invalid_scope', 'The scope is malformed.')
      const missing = asked.filter((s) => !(access.permissions as string[]).includes(s))
      if (missing.length) throw new OAuthError('invalid_scope', `The client does not hold ${missing.slice(0, 5).join(' ')}.`)
      scopes = asked
    }
    const scope = scopes.join(' ')
    const { token, expiresIn } = await this.deps.signer.signClient(client.row.id, scope)
    return { access_token: token, token_type: 'Bearer', expires_in: expiresIn, scope }
  }

  /** RFC 7662: the first introspector that recognises the token answers; anything else is `{active: false}`. */
  async introspect(authorization: string | null, body: FormBody): Promise<Introspection> {
    await this.authenticateClient(authorization, body)
    const token = body.token
    if (!token) throw invalidRequest('token is required.')
    if (token.length > 8192) return { active: false }
    for (const i of this.introspectors) {
      const r = await i.introspect(token, body.token_type_hint)
      if (r) return r
    }
    return { active: false }
  }

  /** RFC 7009: 200 for a revoked and for an unknown token alike (§2.2). */
  async revoke(authorization: string | null, body: FormBody): Promise<void> {
    await this.authenticateClient(authorization, body)
    const token = body.token
    if (!token) throw invalidRequest('token is required.')
    if (token.length > 8192) return
    if (this.isJwtOf(token, CLIENT_TOKEN_TYP)) throw new OAuthError('unsupported_token_type', 'Client access tokens are short-lived and cannot be revoked; disable or delete the client instead.')
    for (const r of this.revokers) if (await r.revoke(token, body.token_type_hint)) return
  }

  private isJwtOf(token: string, typ: string): boolean {
    if (token.split('.').length !== 3) return false
    try {
      const t = decodeProtectedHeader(token).typ
      return typeof t === 'string' && t.toLowerCase().replace(/^application\//, '') === typ.toLowerCase()
    } catch {
      return false
    }
  }

  private audience(): string {
    return this.deps.config.jwt.audience
  }

  private async introspectUserToken(token: string): Promise<Introspection | undefined> {
    if (!this.isJwtOf(token, 'JWT')) return undefined
    try {
      const c = await this.deps.signer.verify(token)
      const session = await this.deps.sessions.getLive(c.sid)
      const user = await this.deps.userAccess(c.sub)
      if (!session || session.userId !== c.sub || !user || user.status !== 'active') return { active: false }
      return { active: true, sub: c.sub, sid: c.sid, exp: c.exp, iat: c.iat, token_type: 'Bearer', iss: this.issuer, aud: this.audience(), scope: user.permissions.join(' ') }
    } catch {
      return { active: false }
    }
  }

  private async introspectClientToken(token: string): Promise<Introspection | undefined> {
    if (!this.isJwtOf(token, CLIENT_TOKEN_TYP)) return undefined
    try {
      const c = await this.deps.signer.verifyClient(token)
      const access = await this.deps.clients.access(c.client_id)
      if (!access || access.status !== 'active') return { active: false }
      // A permission the client lost since the token was issued is no longer in its scope.
      const scope = c.scope.split(' ').filter((s) => (access.permissions as string[]).includes(s)).join(' ')
      return { active: true, sub: c.sub, client_id: c.client_id, scope, exp: c.exp, iat: c.iat, token_type: 'Bearer', iss: this.issuer, aud: this.audience() }
    } catch {
      return { active: false }
    }
  }

  private async introspectRefreshToken(token: string): Promise<Introspection | undefined> {
    if (!/^[A-Za-z0-9_-]{20,200}$/.test(token)) return undefined
    const session = await this.deps.sessions.sessionOfRefreshToken(token)
    if (!session) return undefined
    const user = await this.deps.userAccess(session.userId)
    if (!user || user.status !== 'active') return { active: false }
    return { active: true, sub: session.userId, sid: session.id, exp: Math.floor(session.expiresAt / 1000), iat: Math.floor(session.createdAt / 1000), token_type: 'refresh_token', iss: this.issuer }
  }

  private async revokeRefreshToken(token: string): Promise<boolean> {
    if (!/^[A-Za-z0-9_-]{20,200}$/.test(token)) return false
    const session = await this.deps.sessions.sessionOfRefreshToken(token)
    if (!session) return false
    await this.deps.sessions.revoke(session.id, 'oauth_revoke')
    return true
  }

  /** A user access token ends its session (its refresh family with it). */
  private async revokeUserToken(token: string): Promise<boolean> {
    if (!this.isJwtOf(token, 'JWT')) return false
    try {
      const c = await this.deps.signer.verify(token)
      await this.deps.sessions.revoke(c.sid, 'oauth_revoke')
      return true
    } catch {
      return false
    }
  }
}

/** A row no secret matches, hashed against when the client id is unknown (equal work either way). */
const DUMMY: ClientRow = {
  id: '',
  name: '',
  authMethod: 'client_secret_basic',
  secretHash: 'x',
  previousSecretHash: null,
  previousSecretExpiresAt: null,
  jwks: null,
  permissions: '[]',
  status: 'disabled',
  createdBy: null,
  createdAt: 0,
  updatedAt: 0,
}
