import { afterEach, describe, expect, test } from 'bun:test'
import { hashToken } from '../../../src/lib/crypto'
import { normalizeRecoveryCode } from '../../../src/modules/mfa/recovery-service'
import { caught, mfaSetup } from '../../support/mfa'
import { sqlRows } from '../../support/sql'

let s: Awaited<ReturnType<typeof mfaSetup>>
afterEach(() => s?.close())

const FORMAT = /^[0-9abcdefghjkmnpqrstvwxyz]{5}-[0-9abcdefghjkmnpqrstvwxyz]{5}$/

describe('RecoveryService', () => {
  test('ten distinct codes xxxxx-xxxxx from a 32-symbol alphabet without i, l, o, u (50 bits each)', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const codes = await s.recovery.regenerate(u.id)
    expect(codes).toHaveLength(10)
    expect(new Set(codes).size).toBe(10)
    for (const c of codes) expect(c).toMatch(FORMAT)
    // over many codes every one of the 32 symbols shows up, and only those
    const seen = new Set<string>()
    for (let i = 0; i < 40; i++) for (const c of await s.recovery.regenerate(u.id)) for (const ch of c.replace('-', '')) seen.add(ch)
    expect(seen.size).toBe(32)
    expect(Math.log2(seen.size) * 10).toBeGreaterThanOrEqual(50)
  })

  test('only keyed hashes are stored', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const codes = await s.recovery.regenerate(u.id)
    const rows = await sqlRows<{ code_hash: string }>(s.deps, 'SELECT code_hash FROM recovery_codes WHERE user_id = ?', [u.id])
    const dump = JSON.stringify(rows)
    for (const c of codes) {
      expect(dump).not.toContain(c)
      expect(dump).not.toContain(c.replace('-', ''))
    }
    const expected = codes.map((c) => hashToken(s.deps.keys.tokenHash, normalizeRecoveryCode(c)!)).sort()
    expect(rows.map((r) => r.code_hash).sort()).toEqual(expected)
  })

  test('each code works once; remaining counts down; the event carries the remaining count', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const codes = await s.recovery.regenerate(u.id)
    expect(await s.recovery.use(u.id, codes[0]!)).toEqual({ ok: true, remaining: 9 })
    expect(await s.recovery.use(u.id, codes[0]!)).toEqual({ ok: false, remaining: 9 })
    expect(await s.recovery.use(u.id, codes[1]!)).toEqual({ ok: true, remaining: 8 })
    const ev = await s.events('recovery_code_used')
    expect(ev).toHaveLength(2)
    expect(ev[0]!.details).toEqual({ remaining: 8 })
    expect(ev[0]!.targetId).toBe(u.id)
  })

  test('typed variations are accepted: upper case, no hyphen, spaces, look-alikes (O→0, I/L→1)', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const codes = await s.recovery.regenerate(u.id)
    expect((await s.recovery.use(u.id, codes[0]!.toUpperCase())).ok).toBe(true)
    expect((await s.recovery.use(u.id, codes[1]!.replace('-', ''))).ok).toBe(true)
    expect((await s.recovery.use(u.id, ` ${codes[2]!.slice(0, 5)} ${codes[2]!.slice(6)} `)).ok).toBe(true)
    expect(normalizeRecoveryCode('OOOOO-IIIII')).toBe('0000011111')
    expect(normalizeRecoveryCode('lllll-00000')).toBe('1111100000')
  })

  test('regenerating invalidates the previous set', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const old = await s.recovery.regenerate(u.id)
    const fresh = await s.recovery.regenerate(u.id)
    expect((await s.recovery.use(u.id, old[0]!)).ok).toBe(false)
    expect((await s.recovery.use(u.id, fresh[0]!)).ok).toBe(true)
    expect(await s.recovery.remaining(u.id)).toBe(9)
  })

  test("another user's code does not work", async () => {
    s = await mfaSetup()
    const a = await s.addUser()
    const b = await s.addUser()
    const codesA = await s.recovery.regenerate(a.id)
    await s.recovery.regenerate(b.id)
    expect((await s.recovery.use(b.id, codesA[0]!)).ok).toBe(false)
    expect((await s.recovery.use(a.id, codesA[0]!)).ok).toBe(true)
  })

  test('malformed input is a 422 invalid_code', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    await s.recovery.regenerate(u.id)
    for (const bad of ['', 'abc', 'abcde-abcdef', 'uuuuu-uuuuu', '!!!!!-!!!!!', 'x'.repeat(10_000), 42 as unknown as string]) {
      expect(await caught(() => s.recovery.use(u.id, bad))).toMatchObject({ status: 422, code: 'invalid_code' })
    }
  })
})
