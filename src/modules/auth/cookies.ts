/**
 * The session cookie of browser apps (login with `"transport": "cookie"`): it carries the refresh token,
 * HttpOnly, SameSite=Strict, Path=/, and Secure with the `__Host-` prefix unless BULWARK_ALLOW_HTTP=1 with
 * a plain-http public URL (browsers refuse `__Host-` cookies without Secure; localhost counts as secure).
 */
import type { Config } from '../../config'
import { sessionCookieName } from '../../plugins/csrf'

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

/** The session cookie's value from a Cookie header, if present and well-formed. */
export function readSessionCookie(config: Config, header: string | null): string | undefined {
  if (!header) return undefined
  const name = sessionCookieName(config)
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i < 0) continue
    if (part.slice(0, i).trim() === name) {
      const v = part.slice(i + 1).trim()
      return /^[A-Za-z0-9_-]{20,200}$/.test(v) ? v : undefined
    }
  }
  return undefined
}
