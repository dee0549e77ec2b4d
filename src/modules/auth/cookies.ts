/**
 * The session cookie of browser apps (login with `"transport": "cookie"`): it carries the refresh token,
 * HttpOnly, SameSite=Strict, Path=/, and Secure with the `__Host-` prefix unless BULWARK_ALLOW_HTTP=1 with
 * a plain-http public URL (browsers refuse `__Host-` cookies without Secure; localhost counts as secure).
 */
import type { Config } from '../../config'
import { readCookie, sessionCookieName } from '../../plugins/csrf'

export { sessionCookieName }

/** `__Host-` cookies must be Secure; the plain name is used only for plain-http deployments. */
const secure = (config: Config) => sessionCookieName(config).startsWith('__Host-')

export function sessionCookie(config: Config, value: string): string {
  const attrs = [`${sessionCookieName(config)}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${Math.floor(config.session.absoluteTtlMs / 1000)}`]
  if (secure(config)) attrs.push('Secure')
  return attrs.join('; ')
}

export function clearedSessionCookie(config: Config): string {
  const attrs = [`${sessionCookieName(config)}=`, 'Path=/', 'HttpOnly', 'SameSite=Strict', 'Max-Age=0']
  if (secure(config)) attrs.push('Secure')
  return attrs.join('; ')
}

/** The session cookie's value from a Cookie header, if present and shaped like a refresh token. */
export function readSessionCookie(config: Config, header: string | null): string | undefined {
  const v = readCookie(header, sessionCookieName(config))
  return v !== undefined && /^[A-Za-z0-9_-]{20,200}$/.test(v) ? v : undefined
}
