/**
 * Authentication and authorisation macros. Routes declare `{ auth: true }` or `{ permission: 'users:read' }`
 * (typed by the permission registry), and receive `principal`. The bearer token is verified once per
 * request; the session (revocation, idle and absolute limits), the user's status and effective
 * permissions are checked on every request through caches that changes invalidate synchronously, so a
 * revoked session, a disabled user or a withdrawn permission fails on the very next request.
 */
import { Elysia } from 'elysia'
import { LRUCache } from 'lru-cache'
import { eq } from 'drizzle-orm'
import type { CoreDeps } from '../deps'
import { users } from '../db/schema'
import { AppError, forbidden, unauthorized } from '../lib/errors'
import type { KeyService } from '../modules/keys/service'
import type { SessionRow, SessionService } from '../modules/sessions/service'
import { contextOf } from './request-context'

export interface Access {
  roles: string[]
  permissions: string[]
  level: number
  mfaRequired: boolean
}

export interface Principal {
  userId: string
  sessionId: string
  level: number
  permissions: string[]
  roles: string[]
  amr: string[]
  /** When the user last proved a password or second factor in this session (ms). */
  authTime: number
  mfaPending: boolean
  session: SessionRow
}

export interface AuthenticatorDeps extends Pick<CoreDeps, 'db' | 'config'> {
  signer: KeyService
  sessions: SessionService
  access(userId: string): Access
  permits(granted: string[], required: string): boolean
}

declare module './request-context' {
  interface RequestContext {
    principal?: Principal | Promise<Principal>
  }
}

export class Authenticator {
  private status: LRUCache<string, string>

  constructor(private readonly d: AuthenticatorDeps) {
    this.status = new LRUCache({ max: d.config.cache.maxEntries, ttl: d.config.cache.ttlMs })
  }

  /** Forgets what is cached about a user (status change, deletion). */
  invalidateUser(userId: string): void {
    this.status.delete(userId)
  }

  private userStatus(userId: string): string | undefined {
    let s = this.status.get(userId)
    if (s === undefined) {
      s = this.d.db.select({ status: users.status }).from(users).where(eq(users.id, userId)).get()?.status
      if (s !== undefined) this.status.set(userId, s)
    }
    return s
  }

  /** The caller of a request, verified once per request; 401 `unauthorized`/`invalid_token` otherwise. */
  authenticate(request: Request): Promise<Principal> {
    const ctx = contextOf(request)
    ctx.principal ??= this.resolve(request)
    return ctx.principal as Promise<Principal>
  }

  private async resolve(request: Request): Promise<Principal> {
    const header = request.headers.get('authorization')
    const m = header ? /^Bearer ([A-Za-z0-9_.-]+)$/.exec(header) : null
    if (!m) throw unauthorized('unauthorized', 'A bearer access token is required.')
    const claims = await this.d.signer.verify(m[1]!)
    const session = this.d.sessions.getLive(claims.sid)
    if (!session || session.userId !== claims.sub) throw unauthorized('invalid_token', 'The session of this token has ended.')
    if (this.userStatus(claims.sub) !== 'active') throw unauthorized('invalid_token', 'The account is not active.')
    this.d.sessions.touch(session)
    const access = this.d.access(claims.sub)
    contextOf(request).userId = claims.sub
    return {
      userId: claims.sub,
      sessionId: session.id,
      level: access.level,
      permissions: access.permissions,
      roles: access.roles,
      amr: session.amr.split(','),
      authTime: session.authTime,
      mfaPending: session.mfaPending,
      session,
    }
  }

  permits(p: Principal, permission: string): boolean {
    return this.d.permits(p.permissions, permission)
  }
}

const mfaEnrollmentRequired = () =>
  new AppError(403, 'mfa_enrollment_required', 'A role you hold requires a second factor: enrol one (TOTP or a passkey) before using this route.')

/** The macros: `auth: true`, `auth: 'mfa-enrolment'` (allowed while enrolment is pending), `permission: 'x:y'`. */
export function authPlugin<P extends string = string>(authn: Authenticator) {
  return new Elysia({ name: 'auth' }).macro({
    auth: (mode: true | 'mfa-enrolment') => ({
      detail: { security: [{ bearer: [] }] },
      resolve: async ({ request }) => {
        const principal = await authn.authenticate(request)
        if (principal.mfaPending && mode !== 'mfa-enrolment') throw mfaEnrollmentRequired()
        return { principal }
      },
    }),
    permission: (permission: P) => ({
      detail: { security: [{ bearer: [] }], description: `Requires the permission \`${permission}\`.`, 'x-permission': permission },
      resolve: async ({ request }) => {
        const principal = await authn.authenticate(request)
        if (principal.mfaPending) throw mfaEnrollmentRequired()
        if (!authn.permits(principal, permission)) throw forbidden(`This needs the permission ${permission}.`)
        return { principal }
      },
    }),
  })
}

export type AuthPlugin = ReturnType<typeof authPlugin>
