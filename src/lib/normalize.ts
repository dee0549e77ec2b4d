/**
 * Input hygiene for the two user-controlled strings that other people see: email addresses and display
 * names. Output encoding is the real XSS defence (JSON only, `nosniff`, `default-src 'none'`); these keep
 * stored values canonical (one account per address) and free of invisible or direction-flipping
 * characters that disguise a name in an admin list (Trojan Source, CVE-2021-42574).
 */
import { t } from 'elysia'
import { AppError } from './errors'

export const EMAIL_MAX = 254
export const DISPLAY_NAME_MAX = 100

/** Request schema of an email address (RFC 5321 path limit of 254). */
export const EmailSchema = t.String({ format: 'email', maxLength: EMAIL_MAX })

/** Request schema of a display name (normalise it with normalizeDisplayName before storing). */
export const DisplayNameSchema = t.String({ minLength: 1, maxLength: DISPLAY_NAME_MAX })

/** Canonical email: trimmed, NFKC, lower-case (the whole address, local part included, by choice). */
export const normalizeEmail = (s: string): string => s.trim().normalize('NFKC').toLowerCase()

// C0/C1 controls, bidi embeddings/overrides/isolates and marks (U+202A–U+202E, U+2066–U+2069, U+200E/F,
// U+061C), zero-width space and BOM. ZWJ/ZWNJ stay: emoji sequences and several scripts need them.
const INVISIBLE = /[\p{Cc}\u061C\u200B\u200E\u200F\u202A-\u202E\u2066-\u2069\uFEFF]/gu

/** Canonical display name: NFC, no control/bidi characters, whitespace collapsed, at most 100 code points. */
export function normalizeDisplayName(s: string): string {
  const clean = s
    .normalize('NFC')
    // Controls that are whitespace (tab, newline) become a space rather than gluing words together.
    .replace(/[\t\n\v\f\r\u0085]/g, ' ')
    .replace(INVISIBLE, '')
    .replace(/\s+/gu, ' ')
    .trim()
  const points = Array.from(clean)
  return points.length <= DISPLAY_NAME_MAX ? clean : points.slice(0, DISPLAY_NAME_MAX).join('').trimEnd()
}

// Deliberately plain: one @, no spaces or controls, a dotted domain. Deliverability is proven by the verification mail.
const EMAIL = /^[^\s@\p{Cc}]{1,64}@[^\s@\p{Cc}.][^\s@\p{Cc}]*\.[^\s@\p{Cc}.]{2,}$/u

/**
 * The normalised address, or 422 `validation_failed` naming the field. Request schemas only bound the
 * length, so surrounding spaces and case variants are normalised instead of refused.
 */
export function validEmail(s: string, path = '/email'): string {
  const e = normalizeEmail(s)
  if (e.length > EMAIL_MAX || !EMAIL.test(e) || e.includes('..')) {
    throw new AppError(422, 'validation_failed', 'The request body is not valid.', { errors: [{ path, message: 'Expected an email address' }] })
  }
  return e
}
