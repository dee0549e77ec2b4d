/**
 * Small cryptographic helpers. Every key is derived from the one master secret with HKDF (RFC 5869)
 * under its own label, so a leak of one derived key says nothing about the others.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'

export type KeyPurpose = 'token-hash' | 'csrf' | 'encryption' | 'cursor'

/** The keys Bulwark derives from BULWARK_SECRET. */
export interface Keys {
  tokenHash: Buffer
  csrf: Buffer
  encryption: Buffer
  cursor: Buffer
}

export function deriveKey(secret: string, purpose: KeyPurpose): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('bulwark-v1'), Buffer.from(purpose), 32))
}

export function deriveKeys(secret: string): Keys {
  return {
    tokenHash: deriveKey(secret, 'token-hash'),
    csrf: deriveKey(secret, 'csrf'),
    encryption: deriveKey(secret, 'encryption'),
    cursor: deriveKey(secret, 'cursor'),
  }
}

/** A random opaque token, base64url, `bytes` of entropy (32 = 256 bits by default). */
export const randomToken = (bytes = 32): string => randomBytes(bytes).toString('base64url')

/** Keyed hash of a token for storage: a database dump alone cannot be replayed or brute-forced offline. */
export const hashToken = (key: Buffer, token: string): string => createHmac('sha256', key).update(token).digest('base64url')

/** Constant-time comparison of two strings (length is not secret). */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8')
  const bb = Buffer.from(b, 'utf8')
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab)
    return false
  }
  return timingSafeEqual(ab, bb)
}

/** AES-256-GCM with a random 96-bit nonce; output `v1.<nonce>.<ciphertext+tag>` in base64url. `aad` binds the ciphertext to its row. */
export function encrypt(key: Buffer, plaintext: string, aad = ''): string {
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, iv)
  c.setAAD(Buffer.from(aad))
  const body = Buffer.concat([c.update(plaintext, 'utf8'), c.final(), c.getAuthTag()])
  return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`
}

export function decrypt(key: Buffer, box: string, aad = ''): string {
  const [v, ivB, bodyB] = box.split('.')
  if (v !== 'v1' || !ivB || !bodyB) throw new Error('unknown ciphertext format')
  const body = Buffer.from(bodyB, 'base64url')
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(ivB, 'base64url'))
  d.setAAD(Buffer.from(aad))
  d.setAuthTag(body.subarray(body.length - 16))
  return Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]).toString('utf8')
}

/** HMAC-signed opaque value (cursors): tampering is detected, contents are not secret. */
export function sign(key: Buffer, payload: string): string {
  const p = Buffer.from(payload, 'utf8').toString('base64url')
  return `${p}.${createHmac('sha256', key).update(p).digest('base64url').slice(0, 22)}`
}

export function unsign(key: Buffer, value: string): string | undefined {
  const i = value.lastIndexOf('.')
  if (i <= 0) return undefined
  const p = value.slice(0, i)
  const mac = createHmac('sha256', key).update(p).digest('base64url').slice(0, 22)
  if (!safeEqual(mac, value.slice(i + 1))) return undefined
  return Buffer.from(p, 'base64url').toString('utf8')
}
