/**
 * Step-up: sensitive changes need a recent proof of presence (password or second factor within
 * BULWARK_STEP_UP_TTL, refreshed by POST /v1/me/reauthenticate), not just a live session.
 */
import { AppError } from '../../lib/errors'

/** authTime may come as seconds (JWT `auth_time`) or milliseconds; epoch ms are > 1e12 since 2001. */
export const authTimeMs = (p: { authTime: number }) => (p.authTime < 1e12 ? p.authTime * 1000 : p.authTime)

/** Throws 401 `reauthentication_required` unless the caller proved themselves within `ttlMs` of `now`. */
export function requireRecentProof(p: { authTime: number }, now: number, ttlMs: number): void {
  if (now - authTimeMs(p) > ttlMs) {
    throw new AppError(401, 'reauthentication_required', 'This change needs a recent sign-in; confirm your password or second factor again.')
  }
}
