/**
 * Account recovery for a lost second factor: an owner removes another user's TOTP, recovery codes and
 * passkeys and ends that user's sessions, so the user signs in with the password alone and enrols again
 * (a role that requires MFA confines that session to enrolment). It is the strongest thing an admin can do
 * to an account short of deleting it, so it is fenced more tightly than other user administration:
 *  - only a holder of the `owner` role (403 `owner_required` otherwise, with a `privilege_escalation_denied` event);
 *  - with a fresh step-up of the owner (401 `reauthentication_required`, see POST /v1/me/reauthenticate);
 *  - never on oneself (own factors are removed through /v1/me, with their own step-up), never on a user at or
 *    above the owner's level (so not on another owner);
 *  - recorded as one `mfa_reset` security event with the owner as actor and the user as target, so it is
 *    in the audit log and in both people's own event lists.
 */
import { withTransaction } from '../../db/tx'
import { and, count, eq, isNull, or } from 'drizzle-orm'
import { challenges, passkeys, recoveryCodes, totpFactors } from '../../db/tables'
import { AppError, conflict } from '../../lib/errors'
import type { RequestMeta } from '../audit/service'
import { requireRecentProof } from '../mfa/step-up'
import { OWNER_ROLE, type Actor } from '../rbac/service'
import { endSessionsInTx, type UsersAdminDeps } from './admin-service'

export interface FactorResetResult {
  /** Whether a TOTP enrolment (active or pending) was removed. */
  totp: boolean
  passkeys: number
  /** Unused recovery codes removed. */
  recoveryCodes: number
  sessionsEnded: number
}

/** Removes every second factor of `targetId` and ends their sessions; the rules are in this file's header. */
export async function resetFactors(deps: UsersAdminDeps, actor: Actor & { authTime: number }, targetId: string, meta?: RequestMeta): Promise<FactorResetResult> {
  const me = await deps.rbac.actorView(actor)
  if (!me.roles.includes(OWNER_ROLE)) {
    await deps.audit.record({ type: 'privilege_escalation_denied', outcome: 'failure', actorId: actor.userId, targetId, details: { rule: 'owner_only', action: 'mfa_reset' } }, meta)
    throw new AppError(403, 'owner_required', 'Only an owner can reset the second factors of another user.')
  }
  const now = deps.clock.now()
  requireRecentProof(actor, now, deps.config.tokens.stepUpTtlMs)
  await deps.rbac.authorizeOnUser(actor, targetId, 'mfa_reset', meta)
  let result: FactorResetResult | undefined
  let ended: string[] = []
  await withTransaction(deps.db, async (tx) => {
    const unused = (await tx.select({ n: count() }).from(recoveryCodes).where(and(eq(recoveryCodes.userId, targetId), isNull(recoveryCodes.usedAt))).limit(1))[0]?.n ?? 0
    const totp = (await tx.delete(totpFactors).where(eq(totpFactors.userId, targetId)).returning({ userId: totpFactors.userId })).length > 0
    const keys = (await tx.delete(passkeys).where(eq(passkeys.userId, targetId)).returning({ id: passkeys.id })).length
    const codes = (await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, targetId)).returning({ id: recoveryCodes.id })).length
    if (!totp && keys === 0 && codes === 0) throw conflict('The user has no second factor to reset.', 'no_second_factor')
    // Ceremonies in flight (a passkey registration, a sign-in waiting for its second factor) die with the factors.
    await tx.delete(challenges)
      .where(and(eq(challenges.userId, targetId), or(eq(challenges.kind, 'webauthn_register'), eq(challenges.kind, 'mfa_login'))))
      
    ended = await endSessionsInTx(tx, targetId, now, 'mfa_reset')
    result = { totp, passkeys: keys, recoveryCodes: unused, sessionsEnded: ended.length }
  })
  for (const s of ended) deps.invalidation.emit({ kind: 'session', id: s })
  deps.invalidation.emit({ kind: 'user', id: targetId })
  await deps.audit.record({ type: 'mfa_reset', outcome: 'success', actorId: actor.userId, targetId, details: { ...result! } }, meta)
  return result!
}
