/**
 * Optional authorisation claims in user access tokens (BULWARK_TOKEN_CLAIMS=roles,permissions,scope), for
 * resource servers that decide locally from the JWT. Off by default: such a claim is a snapshot taken when
 * the token was signed, so a role revoked afterwards still shows until the token expires
 * (BULWARK_ACCESS_TOKEN_TTL); introspection (RFC 7662) answers from the live state. A claim with more than
 * BULWARK_TOKEN_CLAIMS_MAX entries is left out whole (never truncated, which would read as "not held").
 */
import type { Config } from '../../config'
import type { Effective } from '../rbac/service'

export function tokenClaims(config: Pick<Config, 'tokenClaims'>, eff: Effective | null): Record<string, unknown> {
  const { include, max } = config.tokenClaims
  if (!include.length || !eff) return {}
  const out: Record<string, unknown> = {}
  if (include.includes('roles') && eff.roles.length <= max) out.roles = [...eff.roles]
  if (include.includes('permissions') && eff.permissions.length <= max) out.permissions = [...eff.permissions]
  if (include.includes('scope') && eff.permissions.length <= max) out.scope = eff.permissions.join(' ')
  return out
}
