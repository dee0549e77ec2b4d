/** Input normalisation: one canonical form for identifiers, safe display text. */

import { AppError } from './errors'

/** Trim, NFKC and lower-case, so look-alike and case variants of an address are one account. */
export const normalizeEmail = (s: string): string => s.trim().normalize('NFKC').toLowerCase()

// Deliberately plain: one @, no spaces or control characters, a dotted domain. Deliverability is proven by the verification mail.
const EMAIL = /^[^\s@\u0000-\u001f\u007f]{1,64}@[^\s@\u0000-\u001f\u007f.][^\s@\u0000-\u001f\u007f]*\.[^\s@\u0000-\u001f\u007f.]{2,}$/

/** The normalised address, or 422 `validation_failed` naming the field. */
export function validEmail(s: string, path = '/email'): string {
  const e = normalizeEmail(s)
  if (e.length > 254 || !EMAIL.test(e) || e.includes('..')) {
    throw new AppError(422, 'validation_failed', 'The request body is not valid.', { errors: [{ path, message: 'Expected an email address' }] })
  }
  return e
}

// C0/C1 controls, bidi overrides/isolates and directional marks: they can disguise a name in UIs and logs.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

/** NFC, without control or bidi-override characters, whitespace collapsed, at most 100 characters. */
export const normalizeDisplayName = (s: string): string => [...s.normalize('NFC').replace(UNSAFE, '').replace(/\s+/g, ' ').trim()].slice(0, 100).join('')
