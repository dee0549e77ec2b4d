/**
 * Test-only stand-in for src/plugins/auth.ts: the caller is whoever `x-test-user` names, signed in
 * `x-test-auth-age` milliseconds ago (default 0). No header → 401, like the real plugin.
 */
import type { Clock } from '../../src/lib/clock'
import { unauthorized } from '../../src/lib/errors'
import { authMacros } from '../../src/plugins/auth-macros'

export const testAuth = (clock: Clock) =>
  authMacros((request) => {
    const userId = request.headers.get('x-test-user')
    if (!userId) throw unauthorized()
    const age = Number(request.headers.get('x-test-auth-age') ?? '0')
    return { userId, sessionId: 'test-session', level: 10, permissions: [], roles: ['user'], amr: ['pwd'], authTime: clock.now() - age, mfaPending: false }
  }, 'test-auth')
