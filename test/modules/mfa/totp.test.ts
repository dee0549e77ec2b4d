import { afterEach, describe, expect, test } from 'bun:test'
import { eq } from 'drizzle-orm'
import { Secret, TOTP } from 'otpauth'
import { totpFactors } from '../../../src/db/tables'
import { encrypt } from '../../../src/lib/crypto'
import { AppError } from '../../../src/lib/errors'
import { base32Decode, caught, codeAt, hotp, mfaSetup } from '../../support/mfa'
import { sqlExec, sqlRows } from '../../support/sql'

type Setup = Awaited<ReturnType<typeof mfaSetup>>
let s: Setup
afterEach(() => s?.close())

/** Enrols and confirms a factor; returns the base32 secret. */
async function activate(userId: string, email = 'a@example.com') {
  const { secret } = await s.totp.enroll(userId, email)
  await s.totp.confirm(userId, codeAt(secret, s.clock.now()))
  return secret
}

describe('RFC 6238 Appendix B test vectors through otpauth', () => {
  const seeds = {
    SHA1: '12345678901234567890',
    SHA256: '12345678901234567890123456789012',
    SHA512: '1234567890123456789012345678901234567890123456789012345678901234',
  } as const
  const vectors: [number, string, string, string][] = [
    [59, '94287082', '46119246', '90693936'],
    [1111111109, '07081804', '68084774', '25091201'],
    [1111111111, '14050471', '67062674', '99943326'],
    [1234567890, '89005924', '91819424', '93441116'],
    [2000000000, '69279037', '90698825', '38618901'],
    [20000000000, '65353130', '77737706', '47863826'],
  ]
  for (const [time, sha1, sha256, sha512] of vectors) {
    test(`T=${time}`, () => {
      for (const [alg, want] of [['SHA1', sha1], ['SHA256', sha256], ['SHA512', sha512]] as const) {
        const secret = Secret.fromLatin1(seeds[alg])
        expect(TOTP.generate({ secret, algorithm: alg, digits: 8, period: 30, timestamp: time * 1000 })).toBe(want)
        // and our independent HOTP agrees, so the test helper itself is checked against the RFC
        expect(hotp(Buffer.from(seeds[alg]), Math.floor(time / 30), 8, alg.toLowerCase() as 'sha1')).toBe(want)
      }
    })
  }
})

describe('TotpService', () => {
  test('enrolment: 160-bit base32 secret, otpauth URI with issuer/account/algorithm/digits, pending', async () => {
    s = await mfaSetup({ BULWARK_TOTP_ISSUER: 'Acme Auth' })
    const u = await s.addUser('alice@example.com')
    const { secret, otpauthUrl } = await s.totp.enroll(u.id, u.email)
    expect(base32Decode(secret).length).toBe(20)
    const url = new URL(otpauthUrl)
    expect(url.protocol).toBe('otpauth:')
    expect(url.host).toBe('totp')
    expect(decodeURIComponent(url.pathname)).toBe('/Acme Auth:alice@example.com')
    expect(url.searchParams.get('secret')).toBe(secret)
    expect(url.searchParams.get('issuer')).toBe('Acme Auth')
    expect(url.searchParams.get('algorithm')).toBe('SHA1')
    expect(url.searchParams.get('digits')).toBe('6')
    expect(url.searchParams.get('period')).toBe('30')
    expect(await s.totp.status(u.id)).toBe('pending')
  })

  test('the stored secret is encrypted: the raw column does not contain it', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const { secret } = await s.totp.enroll(u.id, u.email)
    const raw = await sqlRows(s.deps, 'SELECT * FROM totp_factors')
    const dump = JSON.stringify(raw)
    expect(dump).not.toContain(secret)
    expect(dump).not.toContain(secret.toLowerCase())
    expect(dump).not.toContain(base32Decode(secret).toString('hex'))
    expect(String(raw[0]!.secret_enc)).toStartWith('v1.')
  })

  test('a second enrolment replaces a pending one but never an active one', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const first = await s.totp.enroll(u.id, u.email)
    const second = await s.totp.enroll(u.id, u.email)
    expect(second.secret).not.toBe(first.secret)
    // the first secret's code no longer confirms
    expect(async () => await s.totp.confirm(u.id, codeAt(first.secret, s.clock.now()))).toThrow(AppError)
    await s.totp.confirm(u.id, codeAt(second.secret, s.clock.now()))
    expect(await s.totp.status(u.id)).toBe('active')
    let e: unknown
    try {
      await s.totp.enroll(u.id, u.email)
    } catch (err) {
      e = err
    }
    expect(e).toBeInstanceOf(AppError)
    expect((e as AppError).status).toBe(409)
    expect((e as AppError).code).toBe('totp_already_active')
  })

  test('confirm: a wrong code is a 422, a right one activates and returns 10 recovery codes', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const { secret } = await s.totp.enroll(u.id, u.email)
    const good = codeAt(secret, s.clock.now())
    const wrong = good === '000000' ? '111111' : '000000'
    expect(await caught(async () => await s.totp.confirm(u.id, wrong))).toMatchObject({ status: 422, code: 'invalid_code' })
    expect(await s.totp.status(u.id)).toBe('pending')
    const { recoveryCodes } = await s.totp.confirm(u.id, good)
    expect(recoveryCodes).toHaveLength(10)
    expect(await s.totp.status(u.id)).toBe('active')
    expect(await s.recovery.remaining(u.id)).toBe(10)
    // confirming again: nothing pending
    expect(await caught(async () => await s.totp.confirm(u.id, good))).toMatchObject({ status: 409, code: 'totp_not_pending' })
  })

  test('confirm without any enrolment is a 409', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    expect(await caught(async () => await s.totp.confirm(u.id, '123456'))).toMatchObject({ status: 409 })
  })

  test('codes from an independent HOTP implementation are accepted; the next step is accepted, a replay is refused', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const secret = await activate(u.id)
    // the confirm code used the current step; a code of the same step again is a replay
    expect(await s.totp.verify(u.id, codeAt(secret, s.clock.now()))).toBe(false)
    s.clock.advance(30_000)
    const next = codeAt(secret, s.clock.now())
    expect(await s.totp.verify(u.id, next)).toBe(true)
    expect(await s.totp.verify(u.id, next)).toBe(false)
  })

  test('window: ±1 step accepted, but never a step at or before the last accepted one', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const secret = await activate(u.id)
    s.clock.advance(5 * 30_000)
    const now = s.clock.now()
    // two steps ahead is outside the default window
    expect(await s.totp.verify(u.id, codeAt(secret, now, 2))).toBe(false)
    expect(await s.totp.verify(u.id, codeAt(secret, now, -2))).toBe(false)
    // one step ahead (clock drift) is accepted...
    expect(await s.totp.verify(u.id, codeAt(secret, now, 1))).toBe(true)
    // ...and then the current and previous steps, though inside the window, are refused
    expect(await s.totp.verify(u.id, codeAt(secret, now, 0))).toBe(false)
    expect(await s.totp.verify(u.id, codeAt(secret, now, -1))).toBe(false)
  })

  test('window 0 accepts only the current step', async () => {
    s = await mfaSetup({ BULWARK_TOTP_WINDOW: '0' })
    const u = await s.addUser()
    const secret = await activate(u.id)
    s.clock.advance(10 * 30_000)
    expect(await s.totp.verify(u.id, codeAt(secret, s.clock.now(), 1))).toBe(false)
    expect(await s.totp.verify(u.id, codeAt(secret, s.clock.now(), 0))).toBe(true)
  })

  test('the step is claimed by a conditional UPDATE: a concurrent winner makes the loser fail', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const secret = await activate(u.id)
    s.clock.advance(30_000)
    const code = codeAt(secret, s.clock.now())
    const step = Math.floor(s.clock.now() / 30_000)
    // Simulate another request having claimed this very step between our read and our write:
    // the service reads last_step < step, but the UPDATE's guard sees the new value.
    const real = s.deps.db.update.bind(s.deps.db)
    let raced = false
    const db = s.deps.db as unknown as { update: (t: unknown) => unknown }
    db.update = (t: unknown) => {
      if (raced || t !== totpFactors) return real(t as typeof totpFactors)
      raced = true
      // SQLite runs the other write at once; PostgreSQL's (another connection) is awaited before the service's UPDATE runs.
      const other = sqlExec(s.deps, 'UPDATE totp_factors SET last_step = ? WHERE user_id = ?', [step, u.id])
      const builder = real(totpFactors)
      const set = builder.set.bind(builder)
      return Object.assign(builder, {
        set: (v: Parameters<typeof set>[0]) => {
          const q = set(v)
          const then = q.then.bind(q)
          return Object.assign(q, { then: ((f, r) => other.then(() => then(f, r))) as typeof q.then })
        },
      })
    }
    expect(await s.totp.verify(u.id, code)).toBe(false)
    db.update = real as (t: unknown) => unknown
  })

  test('codes must be 6 digits: letters, wrong lengths and non-strings are 422 invalid_code', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    await activate(u.id)
    for (const bad of ['12345', '1234567', '12345678', 'abcdef', '12 345', '١٢٣٤٥٦', '', '123456\n', 12345 as unknown as string]) {
      expect(await caught(() => s.totp.verify(u.id, bad))).toMatchObject({ status: 422, code: 'invalid_code' })
    }
  })

  test('8-digit SHA-256 enrolments: URI says so, 8-digit codes work, 6-digit codes are 422', async () => {
    s = await mfaSetup({ BULWARK_TOTP_DIGITS: '8', BULWARK_TOTP_ALGORITHM: 'SHA256' })
    const u = await s.addUser()
    const { secret, otpauthUrl } = await s.totp.enroll(u.id, u.email)
    expect(new URL(otpauthUrl).searchParams.get('digits')).toBe('8')
    expect(new URL(otpauthUrl).searchParams.get('algorithm')).toBe('SHA256')
    const code = hotp(base32Decode(secret), Math.floor(s.clock.now() / 30_000), 8, 'sha256')
    expect(await caught(async () => await s.totp.confirm(u.id, code.slice(0, 6)))).toMatchObject({ status: 422, code: 'invalid_code' })
    await s.totp.confirm(u.id, code)
    s.clock.advance(30_000)
    expect(await s.totp.verify(u.id, hotp(base32Decode(secret), Math.floor(s.clock.now() / 30_000), 8, 'sha256'))).toBe(true)
  })

  test('malformed stored data is a 409 totp_unreadable, never a 500', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    await activate(u.id)
    const set = async (v: Partial<typeof totpFactors.$inferInsert>) => await s.deps.db.update(totpFactors).set(v).where(eq(totpFactors.userId, u.id))
    const cases: Partial<typeof totpFactors.$inferInsert>[] = [
      { secretEnc: 'garbage' },
      { secretEnc: 'v1.AAAA.BBBB' },
      { secretEnc: encrypt(s.deps.keys.encryption, 'NOT*BASE32!', `totp:${u.id}`) },
      { secretEnc: encrypt(s.deps.keys.encryption, 'AAAA', `totp:${u.id}`) }, // too short to be a secret
      { secretEnc: encrypt(s.deps.keys.encryption, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', 'totp:someone-else') }, // moved from another row
    ]
    for (const c of cases) {
      await set(c)
      expect(await caught(() => s.totp.verify(u.id, '123456'))).toMatchObject({ status: 409, code: 'totp_unreadable' })
    }
    await set({ secretEnc: encrypt(s.deps.keys.encryption, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', `totp:${u.id}`), digits: 7 })
    expect(await caught(() => s.totp.verify(u.id, '123456'))).toMatchObject({ status: 409, code: 'totp_unreadable' })
    await set({ digits: 6, algorithm: 'MD5' })
    expect(await caught(() => s.totp.verify(u.id, '123456'))).toMatchObject({ status: 409, code: 'totp_unreadable' })
    // the user can still get rid of it and start over
    await s.totp.remove(u.id)
    expect(await s.totp.status(u.id)).toBe('none')
  })

  test('verify without an active factor is false; a pending one does not count', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    expect(await s.totp.verify(u.id, '123456')).toBe(false)
    const { secret } = await s.totp.enroll(u.id, u.email)
    expect(await s.totp.verify(u.id, codeAt(secret, s.clock.now()))).toBe(false)
  })

  test('remove: status none, recovery codes gone when no other factor, 404 when nothing enrolled', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    await activate(u.id)
    expect(await s.recovery.remaining(u.id)).toBe(10)
    await s.totp.remove(u.id)
    expect(await s.totp.status(u.id)).toBe('none')
    expect(await s.recovery.remaining(u.id)).toBe(0)
    expect(await s.events('totp_disabled')).toHaveLength(1)
    expect(await caught(() => s.totp.remove(u.id))).toMatchObject({ status: 404 })
  })
})
