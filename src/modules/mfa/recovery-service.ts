/**
 * Recovery codes: ten single-use codes shown once, for when the authenticator app or passkey is lost.
 * Only keyed hashes are stored, so a database dump alone does not let anyone sign in with them.
 */
import { withTransaction } from '../../db/tx'
import { and, count, eq, isNull } from 'drizzle-orm'
import { randomBytes } from 'node:crypto'
import { recoveryCodes } from '../../db/tables'
import { hashToken } from '../../lib/crypto'
import { unprocessable } from '../../lib/errors'
import { newId } from '../../lib/ids'
import type { RequestMeta } from '../audit/service'
import type { MfaDeps } from './model'

type Tx = import('../../db/client').Tx

/** Crockford base32: 32 symbols, no i/l/o/u; look-alikes typed by the user are folded back on input. */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'
export const RECOVERY_CODE_COUNT = 10
/** 10 symbols of 5 bits each = 50 bits per code. */
const SYMBOLS = 10

/** A fresh code formatted `xxxxx-xxxxx`. 256 is a multiple of 32, so `byte & 31` is uniform. */
function generateCode(): string {
  const bytes = randomBytes(SYMBOLS)
  let s = ''
  for (const b of bytes) s += ALPHABET[b & 31]
  return `${s.slice(0, 5)}-${s.slice(5)}`
}

/** Canonical form of a typed code (case, separators and look-alikes folded) or undefined if it cannot be one. */
export function normalizeRecoveryCode(input: string): string | undefined {
  if (typeof input !== 'string' || input.length > 32) return undefined
  const s = input
    .toLowerCase()
    .replace(/[\s-]/g, '')
    .replace(/[il]/g, '1')
    .replace(/o/g, '0')
  if (s.length !== SYMBOLS) return undefined
  for (const ch of s) if (!ALPHABET.includes(ch)) return undefined
  return s
}

export class RecoveryService {
  constructor(private readonly deps: MfaDeps) {}

  private hash(normalized: string): string {
    return hashToken(this.deps.keys.tokenHash, normalized)
  }

  /** Replaces the user's codes with ten new ones and returns them; the only time they are visible. */
  async regenerate(userId: string, meta: RequestMeta = {}): Promise<string[]> {
    const codes = await withTransaction(this.deps.db, async (tx) => this.regenerateInTx(tx, userId))
    await this.recordRegenerated(userId, meta)
    return codes
  }

  /** The writes of `regenerate` inside the caller's transaction (TOTP confirmation); record the event after commit. */
  async regenerateInTx(tx: Tx, userId: string): Promise<string[]> {
    const now = this.deps.clock.now()
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, generateCode)
    await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId))
    await tx.insert(recoveryCodes)
      .values(codes.map((c) => ({ id: newId(), userId, codeHash: this.hash(normalizeRecoveryCode(c)!), createdAt: now })))
      
    return codes
  }

  async recordRegenerated(userId: string, meta: RequestMeta = {}): Promise<void> {
    await this.deps.audit.record({ type: 'recovery_codes_regenerated', outcome: 'info', actorId: userId, targetId: userId }, meta)
  }

  /**
   * Spends one code. The row is found by its keyed hash (no comparison loop over the user's codes) and
   * marked used by a conditional UPDATE, so two concurrent uses of the same code cannot both succeed.
   */
  async use(userId: string, code: string, meta: RequestMeta = {}): Promise<{ ok: boolean; remaining: number }> {
    const normalized = normalizeRecoveryCode(code)
    if (!normalized) throw unprocessable('invalid_code', 'A recovery code has the form xxxxx-xxxxx.')
    const spent = await this.deps.db
      .update(recoveryCodes)
      .set({ usedAt: this.deps.clock.now() })
      .where(and(eq(recoveryCodes.userId, userId), eq(recoveryCodes.codeHash, this.hash(normalized)), isNull(recoveryCodes.usedAt)))
      .returning({ id: recoveryCodes.id })
      
    const remaining = await this.remaining(userId)
    if (spent.length !== 1) return { ok: false, remaining }
    await this.deps.audit.record({ type: 'recovery_code_used', outcome: 'success', actorId: userId, targetId: userId, details: { remaining } }, meta)
    return { ok: true, remaining }
  }

  /** Unused codes left. */
  async remaining(userId: string): Promise<number> {
    const row = (await this.deps.db
      .select({ n: count() })
      .from(recoveryCodes)
      .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)))
      .limit(1))[0]
    return row?.n ?? 0
  }

  /** Drops every code (when the last second factor goes, codes for it are meaningless). */
  async clear(userId: string): Promise<void> {
    await this.deps.db.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId))
  }
}
