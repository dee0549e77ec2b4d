/**
 * TOTP second factor (RFC 6238) on top of `otpauth`. Secrets are AES-GCM encrypted with the row's user
 * id as associated data, so a database dump alone reveals nothing and a ciphertext moved to another
 * user does not decrypt. Each accepted time step is remembered (`last_step`): a code is good once.
 */
import { withTransaction } from '../../db/tx'
import { and, count, eq, isNull, lt, or } from 'drizzle-orm'
import { HOTP, Secret, TOTP } from 'otpauth'
import { passkeys, totpFactors } from '../../db/tables'
import { decrypt, encrypt, safeEqual } from '../../lib/crypto'
import { AppError, conflict, notFound, unprocessable } from '../../lib/errors'
import type { RequestMeta } from '../audit/service'
import type { MfaDeps } from './model'
import type { RecoveryService } from './recovery-service'

export type TotpStatus = 'none' | 'pending' | 'active'
type Algorithm = 'SHA1' | 'SHA256' | 'SHA512'

const ALGORITHMS = new Set<string>(['SHA1', 'SHA256', 'SHA512'])
const PERIOD = 30
/** 160 bits, the size RFC 4226 recommends for HMAC-SHA1. */
const SECRET_BYTES = 20

interface Factor {
  secret: Secret
  algorithm: Algorithm
  digits: number
  period: number
  status: 'pending' | 'active'
  lastStep: number | null
  secretEnc: string
}

const unreadable = () => new AppError(409, 'totp_unreadable', 'The stored authenticator enrolment cannot be read; remove it and enrol again.')

export class TotpService {
  constructor(
    private readonly deps: MfaDeps,
    private readonly recovery: RecoveryService,
  ) {}

  private aad(userId: string) {
    return `totp:${userId}`
  }

  /** Loads and decrypts the factor; a corrupt row is a 409, never a 500. */
  private async load(userId: string): Promise<Factor | undefined> {
    const row = (await this.deps.db.select().from(totpFactors).where(eq(totpFactors.userId, userId)).limit(1))[0]
    if (!row) return undefined
    try {
      if (!ALGORITHMS.has(row.algorithm) || (row.digits !== 6 && row.digits !== 8) || !(row.period >= 1 && row.period <= 300)) throw new Error('bad parameters')
      const secret = Secret.fromBase32(decrypt(this.deps.keys.encryption, row.secretEnc, this.aad(userId)))
      if (secret.bytes.length < 10) throw new Error('secret too short')
      return { secret, algorithm: row.algorithm as Algorithm, digits: row.digits, period: row.period, status: row.status, lastStep: row.lastStep, secretEnc: row.secretEnc }
    } catch (err) {
      this.deps.logger.error({ userId, reason: (err as Error).message }, 'unreadable TOTP enrolment')
      throw unreadable()
    }
  }

  /** 'none', 'pending' (enrolled, not confirmed) or 'active'. Reads no secret. */
  async status(userId: string): Promise<TotpStatus> {
    const row = (await this.deps.db.select({ status: totpFactors.status }).from(totpFactors).where(eq(totpFactors.userId, userId)).limit(1))[0]
    return row?.status ?? 'none'
  }

  /** Starts (or restarts) an enrolment; an active factor must be removed first. */
  async enroll(userId: string, email: string): Promise<{ secret: string; otpauthUrl: string }> {
    const { issuer, algorithm, digits } = this.deps.config.totp
    const secret = new Secret({ size: SECRET_BYTES })
    const now = this.deps.clock.now()
    const secretEnc = encrypt(this.deps.keys.encryption, secret.base32, this.aad(userId))
    await withTransaction(this.deps.db, async (tx) => {
      const existing = (await tx.select({ status: totpFactors.status }).from(totpFactors).where(eq(totpFactors.userId, userId)).limit(1))[0]
      if (existing?.status === 'active') throw conflict('An authenticator app is already active; remove it first.', 'totp_already_active')
      await tx.delete(totpFactors).where(eq(totpFactors.userId, userId))
      await tx.insert(totpFactors).values({ userId, secretEnc, algorithm, digits, period: PERIOD, status: 'pending', lastStep: null, createdAt: now })
    })
    const otpauthUrl = new TOTP({ issuer, label: email, algorithm, digits, period: PERIOD, secret }).toString()
    return { secret: secret.base32, otpauthUrl }
  }

  /** Activates a pending enrolment with a first valid code and returns fresh recovery codes. */
  async confirm(userId: string, code: string, meta: RequestMeta = {}): Promise<{ recoveryCodes: string[] }> {
    const f = await this.load(userId)
    if (!f || f.status !== 'pending') throw conflict('There is no pending authenticator enrolment to confirm.', 'totp_not_pending')
    this.checkFormat(f, code)
    const step = this.matchStep(f, code)
    if (step === undefined) throw unprocessable('invalid_code', 'The code is not valid.')
    // One transaction: a crash or a failed insert cannot leave an active factor without recovery codes.
    const recoveryCodes = await withTransaction(this.deps.db, async (tx) => {
      // The secret in the WHERE clause: a re-enrolment racing this request cannot be activated by a code of the old secret.
      const done = await tx
        .update(totpFactors)
        .set({ status: 'active', lastStep: step, confirmedAt: this.deps.clock.now() })
        .where(and(eq(totpFactors.userId, userId), eq(totpFactors.status, 'pending'), eq(totpFactors.secretEnc, f.secretEnc)))
        .returning({ userId: totpFactors.userId })
        
      if (done.length !== 1) throw conflict('The enrolment changed meanwhile; start again.', 'totp_not_pending')
      return await this.recovery.regenerateInTx(tx, userId)
    })
    await this.deps.audit.record({ type: 'totp_enabled', outcome: 'success', actorId: userId, targetId: userId }, meta)
    await this.recovery.recordRegenerated(userId, meta)
    return { recoveryCodes }
  }

  /**
   * Checks a code of the active factor. A code whose time step is at or before the last accepted one is
   * refused even inside the window; the step is claimed with a conditional UPDATE so two concurrent
   * uses of the same code cannot both pass.
   */
  async verify(userId: string, code: string): Promise<boolean> {
    const f = await this.load(userId)
    if (!f || f.status !== 'active') return false
    this.checkFormat(f, code)
    const step = this.matchStep(f, code, f.lastStep ?? -1)
    if (step === undefined) return false
    const claimed = await this.deps.db
      .update(totpFactors)
      .set({ lastStep: step })
      .where(and(eq(totpFactors.userId, userId), eq(totpFactors.status, 'active'), or(isNull(totpFactors.lastStep), lt(totpFactors.lastStep, step))))
      .returning({ userId: totpFactors.userId })
      
    return claimed.length === 1
  }

  /** Removes the factor (pending or active); without any factor left, recovery codes go too. */
  async remove(userId: string, meta: RequestMeta = {}): Promise<void> {
    const gone = await this.deps.db.delete(totpFactors).where(eq(totpFactors.userId, userId)).returning({ status: totpFactors.status })
    if (gone.length === 0) throw notFound('No authenticator app is enrolled.')
    const left = (await this.deps.db.select({ n: count() }).from(passkeys).where(eq(passkeys.userId, userId)).limit(1))[0]
    if ((left?.n ?? 0) === 0) await this.recovery.clear(userId)
    await this.deps.audit.record({ type: 'totp_disabled', outcome: 'info', actorId: userId, targetId: userId }, meta)
  }

  private checkFormat(f: Factor, code: string) {
    const re = f.digits === 8 ? /^\d{8}$/ : /^\d{6}$/
    if (typeof code !== 'string' || !re.test(code)) throw unprocessable('invalid_code', `The code must be ${f.digits} digits.`)
  }

  /** The time step (within ±window of now, after `after`) whose code equals `code`; every candidate is computed. */
  private matchStep(f: Factor, code: string, after = -1): number | undefined {
    const now = Math.floor(this.deps.clock.now() / 1000 / f.period)
    const w = this.deps.config.totp.window
    let found: number | undefined
    for (let step = now - w; step <= now + w; step++) {
      const expected = HOTP.generate({ secret: f.secret, algorithm: f.algorithm, digits: f.digits, counter: step })
      if (safeEqual(expected, code) && step > after && found === undefined) found = step
    }
    return found
  }
}
