/**
 * The step between a correct password and a session for users with a second factor. `startMfa` hands
 * out an mfaToken (random, stored only as a keyed hash in `challenges`, five minutes, single-use);
 * `completeMfa` checks exactly one proof against it. Failures are counted per token (five kill it)
 * and per account (five within the window lock the account's MFA step for a doubling period).
 */
import { preparedQuery, withTransaction } from '../../db/tx'
import { and, count, eq, gt, isNull, lt, sql, type SQLWrapper } from 'drizzle-orm'
import { challenges, lockouts, passkeys, recoveryCodes, totpFactors, users } from '../../db/tables'
import { hashToken, randomToken } from '../../lib/crypto'
import { AppError, unprocessable } from '../../lib/errors'
import { newId } from '../../lib/ids'
import type { RequestMeta } from '../audit/service'
import type { AuthenticationResponse, MfaDeps } from './model'
import type { PasskeyService } from './passkey-service'
import type { RecoveryService } from './recovery-service'
import type { TotpService } from './totp-service'

export type MfaMethod = 'totp' | 'recovery_code' | 'webauthn'
export interface MfaProof {
  totp?: string
  recoveryCode?: string
  webauthn?: AuthenticationResponse
}

/** Failures one mfaToken survives. */
export const TOKEN_MAX_FAILURES = 5
/** What each proof adds to the session's amr (vocabulary of sessions.amr). */
const AMR: Record<MfaMethod, string> = { totp: 'otp', recovery_code: 'recovery', webauthn: 'webauthn' }

/**
 * Counts of a user's active TOTP factors, passkeys and unused recovery codes, as scalar subqueries correlated
 * with `users.id` (a select from `users` gets them in its own statement: here and in GET /v1/me's store).
 */
export function factorCountColumns(db: MfaDeps['db']) {
  const n = (q: SQLWrapper) => sql<number>`(${q})`
  return {
    totp: n(db.select({ n: count() }).from(totpFactors).where(and(eq(totpFactors.userId, users.id), eq(totpFactors.status, 'active')))),
    passkeys: n(db.select({ n: count() }).from(passkeys).where(eq(passkeys.userId, users.id))),
    codes: n(db.select({ n: count() }).from(recoveryCodes).where(and(eq(recoveryCodes.userId, users.id), isNull(recoveryCodes.usedAt)))),
  }
}

/** The three counts in one statement (a user that does not exist has none). */
const factorCounts = preparedQuery<{ userId: string }, { totp: number; passkeys: number; codes: number }[]>((db, p) =>
  db
    .select(factorCountColumns(db))
    .from(users)
    .where(eq(users.id, p('userId'))),
)

const invalidToken = () => new AppError(401, 'invalid_mfa_token', 'The sign-in attempt is unknown, expired or already finished; sign in again.')
const invalidProof = () => new AppError(401, 'invalid_mfa_proof', 'The second factor was not accepted.')

/**
 * Account-level lock of the MFA step over the `lockouts` table (kind 'mfa'). Deliberately minimal: the
 * generic LockoutService being built elsewhere has the same semantics over the same rows
 * (config.lockout threshold/window, base duration doubling per lock up to the maximum) and can replace it.
 */
/** What the MFA step needs from an account lock (the composition root passes the shared LockoutService). */
export interface MfaLock {
  lockedUntil(userId: string): Promise<number | undefined>
  fail(userId: string): Promise<number | undefined>
  reset(userId: string): Promise<void>
}

export class MfaLockout implements MfaLock {
  constructor(private readonly deps: MfaDeps) {}

  /** Until when the account's MFA step is locked (ms epoch; Infinity if permanent), or undefined. */
  async lockedUntil(userId: string): Promise<number | undefined> {
    const row = (await this.deps.db.select().from(lockouts).where(and(eq(lockouts.userId, userId), eq(lockouts.kind, 'mfa'))).limit(1))[0]
    if (!row) return undefined
    if (row.permanent) return Number.POSITIVE_INFINITY
    return row.lockedUntil !== null && row.lockedUntil > this.deps.clock.now() ? row.lockedUntil : undefined
  }

  /** Counts one failure; returns the new lock's end when this failure triggered one. */
  async fail(userId: string): Promise<number | undefined> {
    const { threshold, windowMs, baseMs, maxMs, permanentAfter } = this.deps.config.lockout
    const now = this.deps.clock.now()
    return await withTransaction(this.deps.db, async (tx) => {
      const row = (await tx.select().from(lockouts).where(and(eq(lockouts.userId, userId), eq(lockouts.kind, 'mfa'))).limit(1))[0]
      const fresh = !row || now - row.windowStartedAt >= windowMs
      const failures = (fresh ? 0 : row.failures) + 1
      const windowStartedAt = fresh ? now : row.windowStartedAt
      let lockCount = row?.lockCount ?? 0
      let lockedUntil = row?.lockedUntil ?? null
      let permanent = row?.permanent ?? false
      let locked: number | undefined
      if (failures >= threshold) {
        lockCount += 1
        locked = now + Math.min(baseMs * 2 ** Math.min(lockCount - 1, 40), maxMs)
        lockedUntil = locked
        if (permanentAfter > 0 && lockCount >= permanentAfter) permanent = true
      }
      const values = { failures: locked ? 0 : failures, windowStartedAt: locked ? now : windowStartedAt, lockCount, lockedUntil, permanent, updatedAt: now }
      await tx.insert(lockouts)
        .values({ userId, kind: 'mfa', ...values })
        .onConflictDoUpdate({ target: [lockouts.userId, lockouts.kind], set: values })
        
      return locked
    })
  }

  /** A successful second factor clears the counters. */
  async reset(userId: string): Promise<void> {
    await this.deps.db.delete(lockouts).where(and(eq(lockouts.userId, userId), eq(lockouts.kind, 'mfa'), eq(lockouts.permanent, false)))
  }
}

export class MfaLoginService {
  constructor(
    private readonly deps: MfaDeps,
    private readonly totp: TotpService,
    private readonly recovery: RecoveryService,
    private readonly passkeys: PasskeyService,
    readonly lockout: MfaLock = new MfaLockout(deps),
  ) {}

  private tokenHash(token: string) {
    return hashToken(this.deps.keys.tokenHash, `mfa:${token}`)
  }

  /** The factors a user has, as GET /v1/me shows them. */
  async userFactors(userId: string): Promise<{ totp: boolean; passkeys: number; recoveryCodesRemaining: number }> {
    // One statement (three indexed counts), prepared once on SQLite: this runs on every GET /v1/me and sign-in.
    const r = (await factorCounts.all(this.deps.db, { userId }))[0]
    return { totp: Number(r?.totp ?? 0) > 0, passkeys: Number(r?.passkeys ?? 0), recoveryCodesRemaining: Number(r?.codes ?? 0) }
  }

  /** The signed-in user's id, email and name (what the enrolment routes label a factor with); undefined when gone. */
  async account(userId: string): Promise<{ id: string; email: string; name: string | null } | undefined> {
    return (await this.deps.db.select({ id: users.id, email: users.email, name: users.name }).from(users).where(eq(users.id, userId)).limit(1))[0]
  }

  /** True when a password alone must not sign this user in. */
  async hasActiveFactor(userId: string): Promise<boolean> {
    const f = await this.userFactors(userId)
    return f.totp || f.passkeys > 0
  }

  /** The methods the login response offers. */
  async methods(userId: string): Promise<MfaMethod[]> {
    const f = await this.userFactors(userId)
    const m: MfaMethod[] = []
    if (f.totp) m.push('totp')
    if (f.passkeys > 0) m.push('webauthn')
    if ((f.totp || f.passkeys > 0) && f.recoveryCodesRemaining > 0) m.push('recovery_code')
    return m
  }

  /** Opens the second-factor step of a login whose password was right. */
  async startMfa(userId: string, meta: RequestMeta = {}): Promise<{ mfaToken: string; methods: MfaMethod[] }> {
    const methods = await this.methods(userId)
    if (methods.length === 0) throw new AppError(409, 'no_second_factor', 'The account has no second factor.')
    const now = this.deps.clock.now()
    const mfaToken = randomToken(32)
    await this.deps.db.delete(challenges).where(lt(challenges.expiresAt, now))
    await this.deps.db
      .insert(challenges)
      .values({ id: newId(), kind: 'mfa_login', userId, secretHash: this.tokenHash(mfaToken), data: { ip: meta.ip ?? null }, createdAt: now, expiresAt: now + this.deps.config.tokens.mfaTokenTtlMs })
      
    return { mfaToken, methods }
  }

  /** The live challenge row of an mfaToken, or a 401. */
  private async live(mfaToken: string) {
    if (typeof mfaToken !== 'string' || mfaToken.length < 16 || mfaToken.length > 128) throw invalidToken()
    const row = (await this.deps.db
      .select()
      .from(challenges)
      .where(
        and(
          eq(challenges.secretHash, this.tokenHash(mfaToken)),
          eq(challenges.kind, 'mfa_login'),
          isNull(challenges.usedAt),
          gt(challenges.expiresAt, this.deps.clock.now()),
          lt(challenges.attempts, TOKEN_MAX_FAILURES),
        ),
      )
      .limit(1))[0]
    if (!row || !row.userId) throw invalidToken()
    return row as typeof row & { userId: string }
  }

  private async assertNotLocked(userId: string) {
    const until = await this.lockout.lockedUntil(userId)
    if (until === undefined) return
    const headers: Record<string, string> = Number.isFinite(until) ? { 'retry-after': String(Math.max(1, Math.ceil((until - this.deps.clock.now()) / 1000))) } : {}
    throw new AppError(429, 'mfa_locked', 'Too many failed second-factor attempts; try again later.', { headers })
  }

  /** WebAuthn options for the second-factor step of this login (challenge bound to the user and this token). */
  async webauthnOptions(mfaToken: string) {
    const row = await this.live(mfaToken)
    await this.assertNotLocked(row.userId)
    const { options } = await this.passkeys.authenticationOptions({ userId: row.userId, data: { mfaChallengeId: row.id } })
    return options
  }

  /**
   * Checks one proof against the mfaToken. The token is spent only on success; a failure counts
   * against the token and the account. A malformed code is a 422 and counts as nothing (it guesses nothing).
   */
  async completeMfa(mfaToken: string, proof: MfaProof, meta: RequestMeta = {}): Promise<{ userId: string; amr: string[] }> {
    const given = (['totp', 'recoveryCode', 'webauthn'] as const).filter((k) => proof[k] !== undefined)
    if (given.length !== 1) throw unprocessable('validation_failed', 'Give exactly one of totp, recoveryCode or webauthn.')
    const row = await this.live(mfaToken)
    const userId = row.userId
    await this.assertNotLocked(userId)
    const method: MfaMethod = proof.totp !== undefined ? 'totp' : proof.recoveryCode !== undefined ? 'recovery_code' : 'webauthn'
    let ok = false
    try {
      if (method === 'totp') ok = await this.totp.verify(userId, proof.totp!)
      else if (method === 'recovery_code') ok = (await this.methods(userId)).includes('recovery_code') && (await this.recovery.use(userId, proof.recoveryCode!, meta)).ok
      else {
        const r = await this.passkeys.verifyAuthentication(proof.webauthn!, { userId }, meta)
        ok = r.userId === userId
      }
    } catch (err) {
      // Format errors and unreadable enrolments are not guesses; refused assertions are.
      if (!(err instanceof AppError) || err.status === 422 || err.status === 409) throw err
      ok = false
    }
    if (!ok) return await this.failed(row.id, userId, method, meta)
    const spent = await this.deps.db
      .update(challenges)
      .set({ usedAt: this.deps.clock.now() })
      .where(and(eq(challenges.id, row.id), isNull(challenges.usedAt)))
      .returning({ id: challenges.id })
      
    if (spent.length !== 1) throw invalidToken()
    await this.lockout.reset(userId)
    await this.deps.audit.record({ type: 'mfa_succeeded', outcome: 'success', actorId: userId, targetId: userId, details: { method } }, meta)
    return { userId, amr: ['pwd', AMR[method]] }
  }

  private async failed(challengeId: string, userId: string, method: MfaMethod, meta: RequestMeta): Promise<never> {
    // attempts + 1; the fifth failure also marks the token used, so it is dead for good.
    await this.deps.db
      .update(challenges)
      .set({
        attempts: sql`${challenges.attempts} + 1`,
        usedAt: sql`CASE WHEN ${challenges.attempts} + 1 >= ${TOKEN_MAX_FAILURES} THEN ${this.deps.clock.now()} ELSE ${challenges.usedAt} END`,
      })
      .where(eq(challenges.id, challengeId))
      
    await this.deps.audit.record({ type: 'mfa_failed', outcome: 'failure', actorId: userId, targetId: userId, details: { method } }, meta)
    const locked = await this.lockout.fail(userId)
    if (locked !== undefined) {
      await this.deps.audit.record({ type: 'mfa_locked', outcome: 'failure', actorId: userId, targetId: userId, details: { until: new Date(locked).toISOString() } }, meta)
    }
    throw invalidProof()
  }
}
