/**
 * Accounts: registration, sign-in, sign-out, email verification, password reset and change.
 * Sign-in answers `invalid_credentials` alike for an unknown email, a wrong password, a disabled or a
 * locked account, and does the same hashing work in each case, so neither the answer nor its timing
 * reveals whether an account exists.
 */
import { allPrepared, withTransaction } from '../../db/tx'
import { and, count, eq, gt, isNull, sql } from 'drizzle-orm'
import type { CoreDeps } from '../../deps'
import { dialect } from '../../db/tables'
import { emailTokens, users } from '../../db/tables'
import { hashToken, randomToken } from '../../lib/crypto'
import { AppError, conflict, unauthorized } from '../../lib/errors'
import { newId } from '../../lib/ids'
import { normalizeDisplayName, normalizeEmail, validEmail } from '../../lib/normalize'
import type { AuditService, RequestMeta, SecurityEvent } from '../audit/service'
import type { KeyService } from '../keys/service'
import { assignDefaultRole, assignRoleInTx, type RbacService } from '../rbac/service'
import type { SessionRow, SessionService } from '../sessions/service'
import type { Hasher, Mailer, Policy, PolicyReason } from './ports'
import { rememberPasswordInTx } from './password-history'
import { tokenBlock } from '../../lib/mail-links'
import { nextUpdatedAt } from '../users/row-version'

export type UserRow = typeof users.$inferSelect

export interface UserView {
  id: string
  email: string
  name: string | null
  emailVerified: boolean
  createdAt: string
}

export const toUserView = (u: UserRow): UserView => ({
  id: u.id,
  email: u.email,
  name: u.name,
  emailVerified: u.emailVerifiedAt !== null,
  createdAt: new Date(u.createdAt).toISOString(),
})

export interface TokenPair {
  accessToken: string
  refreshToken: string
  tokenType: 'Bearer'
  expiresIn: number
  user: UserView
  sessionId: string
}

export interface MfaChallenge {
  mfaRequired: true
  mfaToken: string
  methods: string[]
}

export type LoginResult = ({ kind: 'tokens' } & TokenPair) | ({ kind: 'mfa' } & MfaChallenge)

/** Hooks other features plug into sign-in without this service knowing them. */
export interface LoginHooks {
  /** Refuses (returns true) while the account is locked; called before the password is checked. */
  isLocked?(userId: string): Promise<boolean>
  /** Counts a wrong password; records `event` (a sign-in attempt's `login_failed`), when given, in the same transaction as the count. */
  onPasswordFailure?(user: UserRow, meta: RequestMeta, event?: SecurityEvent): Promise<void>
  onPasswordSuccess?(user: UserRow): Promise<void>
  /** When the user has an active second factor: the MFA challenge to return instead of tokens. */
  startMfa?(user: UserRow, ctx: { transport: 'bearer' | 'cookie'; meta: RequestMeta }): Promise<MfaChallenge | undefined>
  /** Whether a role of the user requires MFA while no factor is enrolled (session limited to enrolment). */
  mfaEnrollmentRequired?(userId: string): Promise<boolean>
  /** Called after a successful password reset (clears lockouts). */
  onPasswordReset?(userId: string): Promise<void>
}


const invalidCredentials = () => unauthorized('invalid_credentials', 'The email or password is not correct.')

export interface AuthServiceDeps extends Pick<CoreDeps, 'db' | 'clock' | 'config' | 'keys' | 'logger'> {
  audit: AuditService
  sessions: SessionService
  signer: KeyService
  hasher: Hasher
  policy: Policy
  mailer: Mailer
  hooks: LoginHooks
  rbac: RbacService
}

export class AuthService {
  private readonly byId
  private readonly byEmail

  constructor(private readonly d: AuthServiceDeps) {
    // Prepared once: these lookups run on sign-in and on every GET /v1/me.
    this.byId = d.db.select().from(users).where(eq(users.id, sql.placeholder('id'))).prepare()
    this.byEmail = d.db.select().from(users).where(eq(users.email, sql.placeholder('email'))).prepare()
  }

  private hash(token: string) {
    return hashToken(this.d.keys.tokenHash, token)
  }

  async findByEmail(email: string): Promise<UserRow | undefined> {
    return (await allPrepared(this.d.db, this.byEmail, { email: normalizeEmail(email) }))[0]
  }

  async findById(id: string): Promise<UserRow | undefined> {
    return (await allPrepared(this.d.db, this.byId, { id }))[0]
  }

  /** Checks the password policy and the user's recent passwords; throws 422 `weak_password` with reasons. */
  async assertAcceptable(password: string, ctx: { email?: string; name?: string | null; userId?: string }): Promise<void> {
    const reasons: PolicyReason[] = await this.d.policy.check(password, { email: ctx.email, name: ctx.name, userId: ctx.userId })
    if (reasons.length > 0) {
      throw new AppError(422, 'weak_password', 'The password does not meet the password policy.', { fields: { reasons } })
    }
  }

  private async recordPassword(tx: import('../../db/client').Tx, userId: string, hash: string, now: number) {
    // Keep only what the reuse rule looks at (at least one: the current password).
    await rememberPasswordInTx(tx, userId, hash, Math.max(1, this.d.config.password.history), now)
  }

  /** Creates an account with the `user` role and mails a verification link. */
  async register(input: { email: string; password: string; name?: string }, meta: RequestMeta, opts: { role?: string; verified?: boolean } = {}): Promise<UserView> {
    const email = validEmail(input.email)
    const name = input.name === undefined ? null : normalizeDisplayName(input.name) || null
    await this.assertAcceptable(input.password, { email, name })
    if (await this.findByEmail(email)) {
      await this.d.audit.record({ type: 'register', outcome: 'failure', details: { reason: 'email_taken' } }, meta)
      throw conflict('An account with this email already exists.')
    }
    const passwordHash = await this.d.hasher.hash(input.password)
    const now = this.d.clock.now()
    const id = newId()
    const row: UserRow = { id, email, name, passwordHash, status: 'active', emailVerifiedAt: opts.verified ? now : null, passwordChangedAt: now, createdAt: now, updatedAt: now }
    try {
      await withTransaction(this.d.db, async (tx) => {
        await tx.insert(users).values(row)
        await assignDefaultRole(tx, id, now)
        if (opts.role) await assignRoleInTx(tx, id, opts.role, now)
        await this.recordPassword(tx, id, passwordHash, now)
        // Same connection, same transaction: a full disk cannot leave an account without its verification mail.
        if (!opts.verified) await this.sendVerification(row)
      })
    } catch (e) {
      if (dialect.isUniqueViolation(e, 'users', 'email')) throw conflict('An account with this email already exists.')
      throw e
    }
    await this.d.audit.record({ type: 'register', outcome: 'success', actorId: id, targetId: id }, meta)
    return toUserView(row)
  }

  private async issueEmailToken(userId: string, purpose: 'verify_email' | 'password_reset' | 'unlock', ttlMs: number): Promise<string> {
    const token = randomToken(32)
    const now = this.d.clock.now()
    await this.d.db.insert(emailTokens).values({ id: newId(), userId, purpose, tokenHash: this.hash(token), createdAt: now, expiresAt: now + ttlMs })
    return token
  }

  /** Spends a single-use mailed token; undefined when unknown, used, expired or of another purpose. */
  private async consumeEmailToken(token: string, purpose: 'verify_email' | 'password_reset' | 'unlock'): Promise<string | undefined> {
    const now = this.d.clock.now()
    const row = (await this.d.db
      .select()
      .from(emailTokens)
      .where(and(eq(emailTokens.tokenHash, this.hash(token)), eq(emailTokens.purpose, purpose), isNull(emailTokens.usedAt), gt(emailTokens.expiresAt, now)))
      .limit(1))[0]
    if (!row) return undefined
    const r = await this.d.db.update(emailTokens).set({ usedAt: now }).where(and(eq(emailTokens.id, row.id), isNull(emailTokens.usedAt)))
    return dialect.changes(r) === 1 ? row.userId : undefined
  }

  async sendVerification(user: UserRow): Promise<void> {
    const token = await this.issueEmailToken(user.id, 'verify_email', this.d.config.tokens.emailVerifyTtlMs)
    await this.d.mailer.send({
      to: user.email,
      subject: 'Verify your email address',
      text: `Confirm your email address for Bulwark:\n\n${tokenBlock(this.d.config, 'verify', token)}\n\nIt expires in ${Math.round(this.d.config.tokens.emailVerifyTtlMs / 3_600_000)} hours.`,
    })
  }

  /** Marks the address verified. */
  async verifyEmail(token: string, meta: RequestMeta): Promise<void> {
    const userId = await this.consumeEmailToken(token, 'verify_email')
    if (!userId) throw new AppError(400, 'invalid_token', 'The token is not valid or has expired.')
    const now = this.d.clock.now()
    await this.d.db.update(users).set({ emailVerifiedAt: now, updatedAt: nextUpdatedAt(now) }).where(eq(users.id, userId))
    await this.d.audit.record({ type: 'email_verified', outcome: 'success', actorId: userId, targetId: userId }, meta)
  }

  /** Checks email and password; returns tokens, or an MFA challenge when the user has a second factor. */
  async login(input: { email: string; password: string; transport: 'bearer' | 'cookie' }, meta: RequestMeta): Promise<LoginResult> {
    const user = await this.findByEmail(input.email)
    if (!user || !user.passwordHash) {
      await this.d.hasher.dummyVerify(input.password)
      await this.d.audit.record({ type: 'login_failed', outcome: 'failure', details: { reason: 'unknown_email' } }, meta)
      throw invalidCredentials()
    }
    const locked = (await this.d.hooks.isLocked?.(user.id)) ?? false
    const ok = await this.d.hasher.verify(input.password, user.passwordHash)
    if (locked) {
      await this.d.audit.record({ type: 'login_failed', outcome: 'failure', targetId: user.id, details: { reason: 'locked' } }, meta)
      throw invalidCredentials()
    }
    if (!ok) {
      const event = { type: 'login_failed', outcome: 'failure', targetId: user.id, details: { reason: 'wrong_password' } } as const
      // With the lockout hook, the event is written in the same transaction as the failure count.
      if (this.d.hooks.onPasswordFailure) await this.d.hooks.onPasswordFailure(user, meta, event)
      else await this.d.audit.record(event, meta)
      throw invalidCredentials()
    }
    if (user.status !== 'active') {
      await this.d.audit.record({ type: 'login_failed', outcome: 'failure', targetId: user.id, details: { reason: 'disabled' } }, meta)
      throw invalidCredentials()
    }
    await this.d.hooks.onPasswordSuccess?.(user)
    if (this.d.hasher.needsRehash(user.passwordHash)) {
      const rehashed = await this.d.hasher.hash(input.password)
      await this.d.db.update(users).set({ passwordHash: rehashed }).where(eq(users.id, user.id))
    }
    const mfa = await this.d.hooks.startMfa?.(user, { transport: input.transport, meta })
    if (mfa) {
      await this.d.audit.record({ type: 'login_password_ok', outcome: 'info', actorId: user.id, targetId: user.id, details: { mfa: mfa.methods } }, meta)
      return { kind: 'mfa', ...mfa }
    }
    const pair = await this.issueSession(user, { transport: input.transport, amr: ['pwd'], meta })
    return { kind: 'tokens', ...pair }
  }

  /** Starts a session for a user who has proven themselves and returns the token pair. */
  async issueSession(user: UserRow, s: { transport: 'bearer' | 'cookie'; amr: string[]; meta: RequestMeta }): Promise<TokenPair> {
    const mfaPending = !s.amr.some((a) => a !== 'pwd') && ((await this.d.hooks.mfaEnrollmentRequired?.(user.id)) ?? false)
    const { session, refreshToken } = await this.d.sessions.create({
      userId: user.id,
      transport: s.transport,
      amr: s.amr,
      mfaPending,
      meta: s.meta,
      event: (session) => ({ type: 'login', outcome: 'success', actorId: user.id, targetId: user.id, details: { sessionId: session.id, amr: s.amr, transport: s.transport } }),
    })
    const access = await this.d.signer.sign(user.id, session.id)
    return { accessToken: access.token, refreshToken, tokenType: 'Bearer', expiresIn: access.expiresIn, user: toUserView(user), sessionId: session.id }
  }

  /** Spends a refresh token and returns a new pair. */
  async refresh(refreshToken: string, meta: RequestMeta): Promise<TokenPair> {
    // The rotation checks the user is active and records the `refresh` event (src/modules/sessions/service.ts).
    const { session, user, refreshToken: next } = await this.d.sessions.rotate(refreshToken, meta)
    const access = await this.d.signer.sign(user.id, session.id)
    return { accessToken: access.token, refreshToken: next, tokenType: 'Bearer', expiresIn: access.expiresIn, user: toUserView(user), sessionId: session.id }
  }

  async logout(session: SessionRow, meta: RequestMeta): Promise<void> {
    await this.d.sessions.revoke(session.id, 'logout')
    await this.d.audit.record({ type: 'logout', outcome: 'success', actorId: session.userId, targetId: session.userId, details: { sessionId: session.id } }, meta)
  }

  async logoutAll(userId: string, meta: RequestMeta): Promise<void> {
    const n = await this.d.sessions.revokeAll(userId, 'logout_all')
    await this.d.audit.record({ type: 'logout_all', outcome: 'success', actorId: userId, targetId: userId, details: { sessions: n } }, meta)
  }

  /** Mails a reset link when the account exists; does comparable work when it does not. Always "accepted". */
  async forgotPassword(email: string, meta: RequestMeta): Promise<void> {
    const user = await this.findByEmail(email)
    if (!user || user.status !== 'active') {
      this.hash(randomToken(32))
      await this.d.audit.record({ type: 'password_reset_requested', outcome: 'info', details: { known: false } }, meta)
      return
    }
    const token = await this.issueEmailToken(user.id, 'password_reset', this.d.config.tokens.passwordResetTtlMs)
    await this.d.mailer.send({
      to: user.email,
      subject: 'Reset your password',
      text: `Someone (hopefully you) asked to reset the Bulwark password of this account from ${meta.ip ?? 'an unknown address'}.\n\n${tokenBlock(this.d.config, 'reset', token)}\n\nIt expires in ${Math.round(this.d.config.tokens.passwordResetTtlMs / 60_000)} minutes. If you did not ask, ignore this mail.`,
    })
    await this.d.audit.record({ type: 'password_reset_requested', outcome: 'info', targetId: user.id, details: { known: true } }, meta)
  }

  /** Sets a new password from a reset token; ends every session and clears lockouts. */
  async resetPassword(token: string, password: string, meta: RequestMeta): Promise<void> {
    const now = this.d.clock.now()
    const row = (await this.d.db
      .select()
      .from(emailTokens)
      .where(and(eq(emailTokens.tokenHash, this.hash(token)), eq(emailTokens.purpose, 'password_reset'), isNull(emailTokens.usedAt), gt(emailTokens.expiresAt, now)))
      .limit(1))[0]
    if (!row) throw new AppError(400, 'invalid_token', 'The token is not valid or has expired.')
    const user = await this.findById(row.userId)
    if (!user) throw new AppError(400, 'invalid_token', 'The token is not valid or has expired.')
    await this.assertAcceptable(password, { email: user.email, name: user.name, userId: user.id })
    const userId = await this.consumeEmailToken(token, 'password_reset')
    if (userId !== user.id) throw new AppError(400, 'invalid_token', 'The token is not valid or has expired.')
    await this.setPassword(user.id, password)
    await this.d.sessions.revokeAll(user.id, 'password_reset')
    await this.d.hooks.onPasswordReset?.(user.id)
    await this.d.audit.record({ type: 'password_reset', outcome: 'success', actorId: user.id, targetId: user.id }, meta)
  }

  private async setPassword(userId: string, password: string): Promise<void> {
    const hash = await this.d.hasher.hash(password)
    const now = this.d.clock.now()
    await withTransaction(this.d.db, async (tx) => {
      await tx.update(users).set({ passwordHash: hash, passwordChangedAt: now, updatedAt: nextUpdatedAt(now) }).where(eq(users.id, userId))
      await this.recordPassword(tx, userId, hash, now)
    })
  }

  /** Changes the password after checking the current one; ends the other sessions. */
  async changePassword(userId: string, sessionId: string, current: string, password: string, meta: RequestMeta): Promise<void> {
    const user = await this.findById(userId)
    if (!user?.passwordHash) throw unauthorized('invalid_credentials', 'The current password is not correct.')
    // Same guessing budget as sign-in: a stolen access token must not become an unlimited password oracle.
    const locked = (await this.d.hooks.isLocked?.(userId)) ?? false
    const ok = await this.d.hasher.verify(current, user.passwordHash)
    if (locked || !ok) {
      if (!locked) await this.d.hooks.onPasswordFailure?.(user, meta)
      await this.d.audit.record({ type: 'password_change', outcome: 'failure', actorId: userId, targetId: userId, details: { reason: locked ? 'locked' : 'wrong_current_password' } }, meta)
      throw unauthorized('invalid_credentials', 'The current password is not correct.')
    }
    await this.assertAcceptable(password, { email: user.email, name: user.name, userId })
    await this.setPassword(userId, password)
    await this.d.sessions.revokeAll(userId, 'password_change', sessionId)
    await this.d.sessions.markAuthenticated(sessionId, 'pwd')
    await this.d.audit.record({ type: 'password_change', outcome: 'success', actorId: userId, targetId: userId }, meta)
  }

  /** Verifies the password of a signed-in user (step-up for sensitive changes). */
  async verifyPassword(userId: string, password: string): Promise<boolean> {
    const user = await this.findById(userId)
    if (!user?.passwordHash) {
      await this.d.hasher.dummyVerify(password)
      return false
    }
    return this.d.hasher.verify(password, user.passwordHash)
  }

  async updateName(userId: string, name: string | null): Promise<UserRow> {
    const now = this.d.clock.now()
    await this.d.db.update(users).set({ name: name === null ? null : normalizeDisplayName(name) || null, updatedAt: nextUpdatedAt(now) }).where(eq(users.id, userId))
    return (await this.findById(userId))!
  }

  /** Creates the first owner when the database has no users (BULWARK_ADMIN_EMAIL/PASSWORD, `bulwark admin create`). */
  async createOwner(email: string, password: string, meta: RequestMeta = {}): Promise<UserView> {
    if (!await this.d.rbac.roleId('owner')) throw new Error('the owner role is missing: is the database migrated?')
    const view = await this.register({ email, password }, meta, { role: 'owner', verified: true })
    await this.d.audit.record({ type: 'owner_created', outcome: 'success', targetId: view.id }, meta)
    return view
  }

  async userCount(): Promise<number> {
    return Number((await this.d.db.select({ n: count() }).from(users))[0]?.n ?? 0)
  }
}
