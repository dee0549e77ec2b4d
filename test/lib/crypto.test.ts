import { describe, expect, test } from 'bun:test'
import { decrypt, deriveKey, encrypt, hashToken, randomToken, safeEqual, sign, unsign } from '../../src/lib/crypto'

describe('crypto helpers', () => {
  const key = deriveKey('a-test-secret-with-enough-entropy-123', 'encryption')

  test('derived keys differ per purpose', () => {
    expect(deriveKey('s'.repeat(40), 'csrf').equals(deriveKey('s'.repeat(40), 'token-hash'))).toBe(false)
  })

  test('encryption round-trips and detects tampering and wrong context', () => {
    const box = encrypt(key, 'JBSWY3DPEHPK3PXP', 'user-1')
    expect(box).not.toContain('JBSWY3DPEHPK3PXP')
    expect(decrypt(key, box, 'user-1')).toBe('JBSWY3DPEHPK3PXP')
    expect(() => decrypt(key, box, 'user-2')).toThrow()
    const parts = box.split('.')
    const body = Buffer.from(parts[2]!, 'base64url')
    body[0]! ^= 1
    expect(() => decrypt(key, `${parts[0]}.${parts[1]}.${body.toString('base64url')}`, 'user-1')).toThrow()
  })

  test('token hashes are keyed and stable', () => {
    const t = randomToken()
    expect(t.length).toBeGreaterThanOrEqual(43)
    expect(hashToken(key, t)).toBe(hashToken(key, t))
    expect(hashToken(deriveKey('another-secret-with-entropy-000000', 'encryption'), t)).not.toBe(hashToken(key, t))
  })

  test('safeEqual and signed values', () => {
    expect(safeEqual('abc', 'abc')).toBe(true)
    expect(safeEqual('abc', 'abd')).toBe(false)
    expect(safeEqual('abc', 'abcd')).toBe(false)
    const s = sign(key, '{"id":"x"}')
    expect(unsign(key, s)).toBe('{"id":"x"}')
    expect(unsign(key, s.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')))).toBeUndefined()
    expect(unsign(key, 'garbage')).toBeUndefined()
  })
})
