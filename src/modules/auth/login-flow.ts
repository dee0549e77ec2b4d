/**
 * The sign-in flow around the password check: lockout before and after it, the lockout mail, and the MFA
 * step. It lives in the auth module (not in the composition root) so the flow runs one way, service to
 * service; `buildDeps` only wires it.
 */
import type { Config } from '../../config'
import type { Clock } from '../../lib/clock'
import { tokenBlock } from '../../lib/mail-links'
import type { Mailer } from '../mail/outbox'
import type { RequestMeta } from '../audit/service'
import type { LockoutService } from '../lockout/service'
import type { MfaLock } from '../mfa/mfa-login-service'
import type { MfaServices } from '../mfa/services'
import type { RbacService } from '../rbac/service'
import type { LoginHooks } from './service'

/** The MFA step locks through the same LockoutService (kind 'mfa') as everything else, so its cache never disagrees. */
export function mfaLock(lockout: LockoutService): MfaLock {
  return {
    lockedUntil: async (id) => {
      const st = await lockout.isLocked(id, 'mfa')
      return st.locked ? (st.permanent ? Number.POSITIVE_INFINITY : st.until) : undefined
    },
    fail: async (id) => {
      const r = await lockout.recordFailure(id, 'mfa')
      return r.locked ? (r.until ?? Number.POSITIVE_INFINITY) : undefined
    },
    reset: (id) => lockout.recordSuccess(id, 'mfa'),
  }
}

export interface LoginFlowDeps {
  config: Config
  clock: Clock
  mailer: Mailer
  lockout: LockoutService
  mfa: MfaServices
  rbac: Pick<RbacService, 'mfaRequiredFor'>
}

/** The hooks AuthService calls around a sign-in. */
export function loginFlow(d: LoginFlowDeps): LoginHooks {
  const { lockout, mfa } = d
  return {
    startMfa: async (user, ctx) => ((await mfa.login.hasActiveFactor(user.id)) ? { mfaRequired: true, ...(await mfa.login.startMfa(user.id, ctx.meta)) } : undefined),
    mfaEnrollmentRequired: async (userId) => (await d.rbac.mfaRequiredFor(userId)) && !(await mfa.login.hasActiveFactor(userId)),
    isLocked: async (userId) => (await lockout.isLocked(userId, 'password')).locked,
    onPasswordFailure: async (user, meta, event) => {
      const r = await lockout.recordFailure(user.id, 'password', meta, event)
      if (r.locked) await sendLockoutMail(d, user, meta, r.until)
    },
    onPasswordSuccess: (user) => lockout.recordSuccess(user.id, 'password'),
    onPasswordReset: (userId) => lockout.unlock(userId, 'reset'),
  }
}

/** Tells the account owner about a lock, with a one-time unlock link and where the attempts came from. */
export async function sendLockoutMail(d: Pick<LoginFlowDeps, 'config' | 'clock' | 'mailer' | 'lockout'>, user: { id: string; email: string }, meta: RequestMeta, until: number | undefined): Promise<void> {
  const token = await d.lockout.issueUnlockToken(user.id)
  const when = until === undefined ? 'until it is unlocked' : `until ${new Date(until).toISOString()}`
  await d.mailer.send({
    to: user.email,
    subject: 'Your account was locked after failed sign-in attempts',
    text:
      `Several wrong passwords were tried for your Bulwark account, the last at ${new Date(d.clock.now()).toISOString()} from ${meta.ip ?? 'an unknown address'}.\n` +
      `Sign-in is locked ${when}.\n\nIf this was you, unlock it now:\n\n${tokenBlock(d.config, 'unlock', token)}\n\n` +
      `If it was not you, consider changing your password.`,
  })
}
