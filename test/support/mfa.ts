/** Shared set-up for the MFA tests: an app's deps, the MFA services over them, users inserted directly. */
import { createHmac } from 'node:crypto'
import { users } from '../../src/db/tables'
import { newId } from '../../src/lib/ids'
import { buildMfaServices } from '../../src/modules/mfa/services'
import { makeApp } from '../helpers'

export async function mfaSetup(env: Record<string, string> = {}) {
  const app = await makeApp(env)
  const deps = app.deps
  const services = buildMfaServices(deps)
  const addUser = async (email = `u${Math.random().toString(36).slice(2)}@example.com`) => {
    const id = newId()
    const now = deps.clock.now()
    await deps.db.insert(users).values({ id, email, name: 'Test User', createdAt: now, updatedAt: now })
    return { id, email, name: 'Test User' }
  }
  const events = (type: string) => deps.audit.list({ type, limit: 100 })
  return { ...app, ...services, services, addUser, events }
}

/** RFC 4226 HOTP written from the RFC with node:crypto, independent of otpauth. */
export function hotp(secret: Buffer, counter: number, digits = 6, alg: 'sha1' | 'sha256' | 'sha512' = 'sha1'): string {
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac(alg, secret).update(msg).digest()
  const off = mac[mac.length - 1]! & 0x0f
  const bin = ((mac[off]! & 0x7f) << 24) | (mac[off + 1]! << 16) | (mac[off + 2]! << 8) | mac[off + 3]!
  return String(bin % 10 ** digits).padStart(digits, '0')
}

/** RFC 4648 base32 decoding, for reading the secret handed to the user. */
export function base32Decode(s: string): Buffer {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0
  let value = 0
  const out: number[] = []
  for (const ch of s.replace(/=+$/, '').toUpperCase()) {
    const i = A.indexOf(ch)
    if (i < 0) throw new Error(`not base32: ${ch}`)
    value = (value << 5) | i
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(out)
}

/** The TOTP code of `secret` (base32) at the clock's current step plus `delta`. */
export const codeAt = (secretB32: string, nowMs: number, delta = 0, digits = 6) => hotp(base32Decode(secretB32), Math.floor(nowMs / 30_000) + delta, digits)

/** Runs fn and returns the AppError-like thing it threw (sync or async). */
export async function caught(fn: () => unknown): Promise<{ status: number; code: string; extra?: any }> {
  try {
    await fn()
  } catch (e) {
    return e as { status: number; code: string }
  }
  throw new Error('expected an error')
}
