/**
 * Structured JSON logs (pino) to stdout. Anything that looks like a credential is redacted by path,
 * wherever it appears, so a careless `log.info({ body })` cannot leak a password or token.
 */
import pino, { type DestinationStream, type Logger } from 'pino'

export type { Logger }

const SECRET_KEYS = [
  'password',
  'currentPassword',
  'newPassword',
  'token',
  'accessToken',
  'refreshToken',
  'mfaToken',
  'csrfToken',
  'secret',
  'totp',
  'code',
  'recoveryCode',
  'recoveryCodes',
  'authorization',
  'cookie',
  'set-cookie',
  'x-csrf-token',
  'passwordHash',
]

/** Paths pino redacts: each key at the top level and up to two levels down. */
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => {
  const key = /^[a-zA-Z_$][\w$]*$/.test(k) ? k : `["${k}"]`
  const dot = key.startsWith('[') ? key : `.${key}`
  return [key.startsWith('[') ? key : k, `*${dot}`, `*.*${dot}`]
})

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'bulwark' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      messageKey: 'msg',
    },
    destination ?? pino.destination({ dest: 1, sync: false, minLength: 0 }),
  )
}
