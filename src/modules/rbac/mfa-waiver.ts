/**
 * Administrative roles require a second factor. A role whose permissions include any of
 * `ADMIN_PERMISSIONS` is administrative: it can change accounts, roles or sessions, read the security log,
 * destroy other users' data, or configure integrations. Such a role requires MFA unless an owner waives
 * it: creating one, or patching one, with `mfaRequired: false` is refused for anyone but an owner
 * (403 `mfa_waiver_forbidden`, plus a `privilege_escalation_denied` event), and an owner's waiver is
 * recorded as a `role_mfa_waived` event. Leaving `mfaRequired` out of a create, or out of a patch that
 * makes a role administrative, switches MFA on.
 */
import { AppError } from '../../lib/errors'
import { expandPattern } from '../../lib/permissions'
import type { AuditService, RequestMeta } from '../audit/service'

/**
 * Administrative permissions. Names not registered in this build (integration permissions such as
 * `clients:write`) are listed so that they count as soon as they exist; matching is on registered
 * permissions after pattern expansion, so `users:*` or `*:*` count too.
 */
export const ADMIN_PERMISSIONS: ReadonlySet<string> = new Set([
  'users:write',
  'users:delete',
  'roles:write',
  'roles:assign',
  'sessions:revoke',
  'audit:read',
  'files:delete:any',
  'clients:write',
  'webhooks:write',
  'apikeys:read',
  'apikeys:write',
  'keys:write',
])

/** The administrative permissions that a set of patterns grants (sorted). */
export function adminPermissionsOf(patterns: readonly string[]): string[] {
  const out = new Set<string>()
  for (const p of patterns) for (const perm of expandPattern(p)) if (ADMIN_PERMISSIONS.has(perm)) out.add(perm)
  return [...out].sort()
}

export interface WaiverDecision {
  /** The mfaRequired value to store. */
  mfaRequired: boolean
  /** True when this change waives MFA on an administrative role (audit it after the change succeeds). */
  waived: boolean
  /** The administrative permissions of the resulting role. */
  admin: string[]
}

/**
 * Decides the role's `mfaRequired` after a create (`before` undefined) or a patch. Throws 403
 * `mfa_waiver_forbidden` (after recording the refusal) when a non-owner asks for an administrative role
 * without MFA.
 */
export async function decideMfa(
  audit: Pick<AuditService, 'record'>,
  actor: { userId: string; isOwner: boolean },
  role: string,
  action: 'role_create' | 'role_update',
  after: { patterns: readonly string[]; requested: boolean | undefined },
  before: { patterns: readonly string[]; mfaRequired: boolean } | undefined,
  meta?: RequestMeta,
): Promise<WaiverDecision> {
  const admin = adminPermissionsOf(after.patterns)
  const wasAdmin = before ? adminPermissionsOf(before.patterns) : []
  const newlyAdmin = admin.some((p) => !wasAdmin.includes(p))
  // Not given: a create of an administrative role, or a patch adding administrative permissions, turns MFA on.
  const mfaRequired = after.requested ?? (before === undefined ? admin.length > 0 : newlyAdmin || before.mfaRequired)
  const waived = admin.length > 0 && after.requested === false
  if (waived && !actor.isOwner) {
    await audit.record(
      { type: 'privilege_escalation_denied', outcome: 'failure', actorId: actor.userId, targetId: null, details: { rule: 'mfa_waiver', action, role, permissions: admin } },
      meta,
    )
    throw new AppError(403, 'mfa_waiver_forbidden', `The role holds administrative permissions (${admin.join(', ')}); only an owner may set mfaRequired to false on it.`)
  }
  return { mfaRequired, waived, admin }
}

/** Records an owner's waiver of MFA on an administrative role. */
export async function recordWaiver(audit: Pick<AuditService, 'record'>, actorId: string, role: string, admin: string[], meta?: RequestMeta): Promise<void> {
  await audit.record({ type: 'role_mfa_waived', outcome: 'success', actorId, targetId: null, details: { role, permissions: admin } }, meta)
}
