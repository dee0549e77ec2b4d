/**
 * TEST-ONLY stand-in for the auth plugin: the same `{ auth: true }` / `{ permission }` macros, with the
 * principal read from an `x-test-user: <user id>` header and resolved through RbacService (so cache
 * invalidation is exercised end to end). The real plugin (JWT + sessions) replaces it in src/app.ts.
 */
import { unauthorized } from '../../src/lib/errors'
import type { RbacService } from '../../src/modules/rbac/service'
import { authMacros } from '../../src/plugins/auth-macros'

export function testAuth(rbac: RbacService) {
  return authMacros((request) => {
    const userId = request.headers.get('x-test-user')
    if (!userId) throw unauthorized()
    const eff = rbac.effective(userId)
    if (!eff || eff.status !== 'active') throw unauthorized('invalid_token', 'The session has ended.')
    return { userId, sessionId: 'test-session', level: eff.level, permissions: eff.permissions, roles: eff.roles, amr: ['pwd'], authTime: 0, mfaPending: false }
  }, 'test-auth')
}
