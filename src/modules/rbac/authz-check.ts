/**
 * The policy decision API (POST /v1/authz/check) for resource servers: one question, or a batch of up to
 * `MAX_BATCH`, about a user id or about the *token* the resource server was handed. A token is verified
 * exactly as the auth plugin verifies it (access JWT: signature, issuer, audience, expiry, live session;
 * API key: live, unexpired, owner active, limited to the key's scope). An invalid token is an answer, not
 * an error: `{allowed: false, reason: "invalid token"}` with 200, because the caller (the resource
 * server) authenticated fine and asked a question whose answer is "no"; it then sends its own 401.
 * Answers come from the RBAC caches, which every change clears before its request answers.
 */
import { unprocessable, type FieldError } from '../../lib/errors'
import { patternGrants } from '../../lib/permissions'
import type { KeyService } from '../keys/service'
import type { SessionService } from '../sessions/service'
import type { ApiKeyService } from '../apikeys/service'
import { looksLikeApiKey } from '../apikeys/format'
import type { CheckResult, RbacService } from './service'

export const MAX_BATCH = 100

export interface CheckQuestion {
  userId?: string
  token?: string
  permission?: string
  resourceOwnerId?: string
}

/** Who a token speaks for: a user, optionally limited to some permissions (an API key's scope, an OAuth client's scope). */
export type TokenSubject =
  | { userId: string; permissions?: readonly string[]; kind: string }
  /** An OAuth client (client-credentials token): what it holds now, narrowed to its token's scope. */
  | { clientId: string; permissions: readonly string[]; kind: 'client' }
  | { invalid: string }

/** Resolves tokens no built-in kind recognises (service clients of the OAuth module plug in here). */
export type TokenSubjectResolver = (token: string) => Promise<TokenSubject | undefined>

export interface AuthzCheckDeps {
  rbac: Pick<RbacService, 'check'>
  signer: Pick<KeyService, 'verify'>
  sessions: Pick<SessionService, 'getLive'>
  apiKeys: Pick<ApiKeyService, 'authenticate'>
}

export class AuthzCheckService {
  /** Extra token kinds, tried first (the OAuth module's client tokens). */
  readonly resolvers: TokenSubjectResolver[] = []

  constructor(private readonly d: AuthzCheckDeps) {}

  /** Answers one question or a batch (`checks`); 422 when a question is malformed or names an unknown permission. */
  async answer(body: CheckQuestion & { checks?: CheckQuestion[] }): Promise<CheckResult | { results: CheckResult[] }> {
    if (body.checks !== undefined) {
      if (body.userId !== undefined || body.token !== undefined || body.permission !== undefined || body.resourceOwnerId !== undefined) {
        throw unprocessable('validation_failed', 'Give either one question or `checks`, not both.', [{ path: '/checks', message: 'Not together with userId, token, permission or resourceOwnerId' }])
      }
      if (body.checks.length === 0 || body.checks.length > MAX_BATCH) throw unprocessable('validation_failed', `A batch has 1 to ${MAX_BATCH} checks.`, [{ path: '/checks', message: `Expected 1 to ${MAX_BATCH} items` }])
      const errors = body.checks.flatMap((q, i) => this.problems(q, `/checks/${i}`)).slice(0, 20)
      if (errors.length) throw unprocessable('validation_failed', 'A check is not valid.', errors)
      const subjects = new Map<string, Promise<TokenSubject>>()
      const results: CheckResult[] = []
      // Each check verifies its token once per batch; the RBAC lookups are cached.
      for (const q of body.checks) results.push(await this.one(q, subjects))
      return { results }
    }
    const errors = this.problems(body, '')
    if (errors.length) throw unprocessable('validation_failed', 'The check is not valid.', errors)
    return await this.one(body, new Map())
  }

  private problems(q: CheckQuestion, at: string): FieldError[] {
    const out: FieldError[] = []
    if ((q.userId === undefined) === (q.token === undefined)) out.push({ path: `${at}/userId`, message: 'Give exactly one of userId and token' })
    if (q.permission === undefined) out.push({ path: `${at}/permission`, message: 'Required' })
    return out
  }

  private async one(q: CheckQuestion, subjects: Map<string, Promise<TokenSubject>>): Promise<CheckResult> {
    if (q.userId !== undefined) return await this.d.rbac.check(q.userId, q.permission!, q.resourceOwnerId)
    const token = q.token!
    let pending = subjects.get(token)
    if (!pending) {
      pending = this.subject(token)
      subjects.set(token, pending)
    }
    const s = await pending
    if ('invalid' in s) {
      // Still 422 for an unknown permission, whatever the token: a typo must not read as a plain "no".
      await this.d.rbac.check('', q.permission!, q.resourceOwnerId)
      return { allowed: false, reason: s.invalid }
    }
    const perm = q.permission!
    const candidates = perm.split(':').length === 2 ? [perm, `${perm}:own`, `${perm}:any`] : [perm]
    const grants = (held: readonly string[]) => candidates.some((c) => held.includes(c) || held.some((p) => p.includes('*') && patternGrants(p, c)))
    if ('clientId' in s) {
      // The same 422 for an unknown permission as for users; then the client's own grants decide.
      await this.d.rbac.check('', perm, q.resourceOwnerId)
      return grants(s.permissions) ? { allowed: true, reason: `granted to client ${s.clientId} (within its token scope)` } : { allowed: false, reason: `client ${s.clientId} does not hold ${perm} in its token scope` }
    }
    const r = await this.d.rbac.check(s.userId, perm, q.resourceOwnerId)
    if (!r.allowed || s.permissions === undefined) return r
    if (grants(s.permissions)) return { allowed: true, reason: `${r.reason}; within the ${s.kind} scope` }
    return { allowed: false, reason: `${perm} is outside the ${s.kind} scope` }
  }

  private async subject(token: string): Promise<TokenSubject> {
    for (const resolve of this.resolvers) {
      const s = await resolve(token)
      if (s) return s
    }
    if (looksLikeApiKey(token)) {
      const a = await this.d.apiKeys.authenticate(token)
      return a ? { userId: a.row.userId, permissions: a.permissions, kind: 'API key' } : { invalid: 'invalid token' }
    }
    try {
      const claims = await this.d.signer.verify(token)
      const session = await this.d.sessions.getLive(claims.sid)
      if (!session || session.userId !== claims.sub) return { invalid: 'invalid token' }
      return { userId: claims.sub, kind: 'session' }
    } catch {
      return { invalid: 'invalid token' }
    }
  }
}
