/**
 * The part of a mail that carries a single-use token: a link into the application when one is
 * configured (BULWARK_MAIL_LINK_* templates, or BULWARK_APP_URL with the default paths), and always
 * the token itself with the API call that spends it, so a mail never points at a page that 404s.
 */
import type { Config } from '../config'

export type MailLinkKind = keyof Config['mailLinks']

const API: Record<MailLinkKind, { call: string; label: string }> = {
  verify: { call: 'POST /v1/auth/email/verify', label: 'verification' },
  reset: { call: 'POST /v1/auth/password/reset', label: 'reset' },
  unlock: { call: 'POST /v1/auth/unlock', label: 'unlock' },
}

/** The application link for a token, or undefined when none is configured. */
export function mailLink(config: Pick<Config, 'mailLinks'>, kind: MailLinkKind, token: string): string | undefined {
  const template = config.mailLinks[kind]
  return template === undefined ? undefined : template.replaceAll('{token}', encodeURIComponent(token))
}

/** The lines of a mail that hand over the token. */
export function tokenBlock(config: Pick<Config, 'mailLinks'>, kind: MailLinkKind, token: string): string {
  const link = mailLink(config, kind, token)
  const { call, label } = API[kind]
  if (link) return `${link}\n\nOr send this token to ${call}: ${token}`
  return `Your ${label} token:\n\n${token}\n\nEnter it in the application that sent you here (it sends it to ${call}).`
}
