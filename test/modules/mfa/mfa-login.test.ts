import { afterEach, describe, expect, test } from 'bun:test'
import { hashToken } from '../../../src/lib/crypto'
import { SoftAuthenticator } from '../../support/soft-authenticator'
import { caught, codeAt, mfaSetup } from '../../support/mfa'
import { sqlRows } from '../../support/sql'

let s: Awaited<ReturnType<typeof mfaSetup>>
afterEach(() => s?.close())

/** A user with an active TOTP factor; returns the secret and recovery codes. */
async function withTotp() {
  const u = await s.addUser()
  const { secret } = await s.totp.enroll(u.id, u.email)
  const { recoveryCodes } = await s.totp.confirm(u.id, codeAt(secret, s.clock.now()))
  s.clock.advance(30_000) // the confirm code's step is spent
  return { u, secret, recoveryCodes }
}

const wrongCode = (right: string) => (right === '000000' ? '111111' : '000000')

describe('MfaLoginService', () => {
  test('factors and methods follow what the user has', async () => {
    s = await mfaSetup()
    const plain = await s.addUser()
    expect(await s.login.userFactors(plain.id)).toEqual({ totp: false, passkeys: 0, recoveryCodesRemaining: 0 })
    expect(await s.login.hasActiveFactor(plain.id)).toBe(false)
    expect(await caught(() => s.login.startMfa(plain.id))).toMatchObject({ status: 409, code: 'no_second_factor' })
    const { u } = await withTotp()
    expect(await s.login.userFactors(u.id)).toEqual({ totp: true, passkeys: 0, recoveryCodesRemaining: 10 })
    expect(await s.login.hasActiveFactor(u.id)).toBe(true)
    expect((await s.login.startMfa(u.id)).methods).toEqual(['totp', 'recovery_code'])
    const auth = await SoftAuthenticator.create()
    await s.passkeys.verifyRegistration(u.id, await auth.register(await s.passkeys.registrationOptions(u)))
    expect((await s.login.startMfa(u.id)).methods).toEqual(['totp', 'webauthn', 'recovery_code'])
    // a pending enrolment is not a factor
    const pending = await s.addUser()
    await s.totp.enroll(pending.id, pending.email)
    expect(await s.login.hasActiveFactor(pending.id)).toBe(false)
  })

  test('the mfaToken is random, stored only as a keyed hash, and lives config.tokens.mfaTokenTtlMs', async () => {
    s = await mfaSetup()
    const { u } = await withTotp()
    const { mfaToken } = await s.login.startMfa(u.id, { ip: '198.51.100.7' })
    expect(Buffer.from(mfaToken, 'base64url').length).toBe(32)
    const row = (await sqlRows<Record<string, any>>(s.deps, "SELECT * FROM challenges WHERE kind = 'mfa_login'"))[0]!
    expect(row.secret_hash).toBe(hashToken(s.deps.keys.tokenHash, `mfa:${mfaToken}`))
    expect(JSON.stringify(row)).not.toContain(mfaToken)
    expect(row.user_id).toBe(u.id)
    expect(row.expires_at - row.created_at).toBe(s.deps.config.tokens.mfaTokenTtlMs)
  })

  test('TOTP proof: success returns the user and amr, and spends the token', async () => {
    s = await mfaSetup()
    const { u, secret } = await withTotp()
    const { mfaToken } = await s.login.startMfa(u.id)
    expect(await s.login.completeMfa(mfaToken, { totp: codeAt(secret, s.clock.now()) })).toEqual({ userId: u.id, amr: ['pwd', 'otp'] })
    s.clock.advance(30_000)
    expect(await caught(async () => await s.login.completeMfa(mfaToken, { totp: codeAt(secret, s.clock.now()) }))).toMatchObject({ status: 401, code: 'invalid_mfa_token' })
    expect(await s.events('mfa_succeeded')).toHaveLength(1)
  })

  test('a failure does not spend the token; a later right code works', async () => {
    s = await mfaSetup()
    const { u, secret } = await withTotp()
    const { mfaToken } = await s.login.startMfa(u.id)
    const right = codeAt(secret, s.clock.now())
    expect(await caught(async () => await s.login.completeMfa(mfaToken, { totp: wrongCode(right) }))).toMatchObject({ status: 401, code: 'invalid_mfa_proof' })
    expect((await s.login.completeMfa(mfaToken, { totp: right })).userId).toBe(u.id)
    const failed = await s.events('mfa_failed')
    expect(failed).toHaveLength(1)
    expect(failed[0]!.details).toEqual({ method: 'totp' })
  })

  test('five failures kill the token, even for the right code afterwards', async () => {
    s = await mfaSetup({ BULWARK_LOCKOUT_THRESHOLD: '100' })
    const { u, secret } = await withTotp()
    const { mfaToken } = await s.login.startMfa(u.id)
    const right = codeAt(secret, s.clock.now())
    for (let i = 0; i < 5; i++) expect(await caught(async () => await s.login.completeMfa(mfaToken, { totp: wrongCode(right) }))).toMatchObject({ code: 'invalid_mfa_proof' })
    expect(await caught(async () => await s.login.completeMfa(mfaToken, { totp: right }))).toMatchObject({ status: 401, code: 'invalid_mfa_token' })
    // a new login gets a new token
    const again = await s.login.startMfa(u.id)
    expect((await s.login.completeMfa(again.mfaToken, { totp: right })).userId).toBe(u.id)
  })

  test('the token expires', async () => {
    s = await mfaSetup()
    const { u, secret } = await withTotp()
    const { mfaToken } = await s.login.startMfa(u.id)
    s.clock.advance(s.deps.config.tokens.mfaTokenTtlMs)
    expect(await caught(async () => await s.login.completeMfa(mfaToken, { totp: codeAt(secret, s.clock.now()) }))).toMatchObject({ status: 401, code: 'invalid_mfa_token' })
    for (const bad of ['', 'x', 'y'.repeat(10_000), 'A'.repeat(43)]) expect(await caught(async () => await s.login.completeMfa(bad, { totp: '123456' }))).toMatchObject({ status: 401, code: 'invalid_mfa_token' })
  })

  test('account lock: five failures across tokens lock the MFA step for 1 min, then 2 min; mfa_locked recorded', async () => {
    s = await mfaSetup()
    const { u, secret } = await withTotp()
    const fail = async () => {
      const { mfaToken } = await s.login.startMfa(u.id)
      return caught(async () => await s.login.completeMfa(mfaToken, { totp: wrongCode(codeAt(secret, s.clock.now())) }))
    }
    for (let i = 0; i < 5; i++) expect(await fail()).toMatchObject({ status: 401, code: 'invalid_mfa_proof' })
    expect(await s.events('mfa_locked')).toHaveLength(1)
    const { mfaToken } = await s.login.startMfa(u.id)
    const locked = await caught(async () => await s.login.completeMfa(mfaToken, { totp: codeAt(secret, s.clock.now()) }))
    expect(locked).toMatchObject({ status: 429, code: 'mfa_locked' })
    expect(locked.extra.headers['retry-after']).toBe('60')
    s.clock.advance(60_000)
    // unlocked; five more failures in the window lock for twice as long
    for (let i = 0; i < 5; i++) await fail()
    const again = await caught(async () => await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { totp: '123456' }))
    expect(again).toMatchObject({ status: 429 })
    expect(again.extra.headers['retry-after']).toBe('120')
    expect(await s.events('mfa_locked')).toHaveLength(2)
    s.clock.advance(120_000)
    // a success clears the counters
    expect((await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { totp: codeAt(secret, s.clock.now()) })).userId).toBe(u.id)
    expect(await sqlRows(s.deps, "SELECT * FROM lockouts WHERE kind = 'mfa'")).toEqual([])
  })

  test('failures older than the window do not add up', async () => {
    s = await mfaSetup()
    const { u, secret } = await withTotp()
    for (let i = 0; i < 4; i++) await caught(async () => await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { totp: wrongCode(codeAt(secret, s.clock.now())) }))
    s.clock.advance(15 * 60_000)
    for (let i = 0; i < 4; i++) await caught(async () => await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { totp: wrongCode(codeAt(secret, s.clock.now())) }))
    expect(await s.events('mfa_locked')).toHaveLength(0)
    expect((await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { totp: codeAt(secret, s.clock.now()) })).amr).toEqual(['pwd', 'otp'])
  })

  test('recovery code proof: single use, amr recovery', async () => {
    s = await mfaSetup()
    const { u, recoveryCodes } = await withTotp()
    expect(await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { recoveryCode: recoveryCodes[3]! })).toEqual({ userId: u.id, amr: ['pwd', 'recovery'] })
    expect(await caught(async () => await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { recoveryCode: recoveryCodes[3]! }))).toMatchObject({ status: 401, code: 'invalid_mfa_proof' })
    expect((await s.login.userFactors(u.id)).recoveryCodesRemaining).toBe(9)
  })

  test('WebAuthn proof through webauthnOptions(mfaToken); a passwordless challenge or another user\'s passkey does not do', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const auth = await SoftAuthenticator.create()
    await s.passkeys.verifyRegistration(u.id, await auth.register(await s.passkeys.registrationOptions(u)))
    const { mfaToken, methods } = await s.login.startMfa(u.id)
    expect(methods).toEqual(['webauthn'])
    const options = await s.login.webauthnOptions(mfaToken)
    expect(options.allowCredentials?.map((c) => c.id)).toEqual([auth.id])
    expect(await s.login.completeMfa(mfaToken, { webauthn: await auth.assert(options) })).toEqual({ userId: u.id, amr: ['pwd', 'webauthn'] })

    const t2 = (await s.login.startMfa(u.id)).mfaToken
    const open = await s.passkeys.authenticationOptions()
    expect(await caught(async () => await s.login.completeMfa(t2, { webauthn: await auth.assert(open.options) }))).toMatchObject({ status: 401, code: 'invalid_mfa_proof' })
    const v = await s.addUser()
    const other = await SoftAuthenticator.create()
    await s.passkeys.verifyRegistration(v.id, await other.register(await s.passkeys.registrationOptions(v)))
    expect(await caught(async () => await s.login.completeMfa(t2, { webauthn: await other.assert(await s.login.webauthnOptions(t2)) }))).toMatchObject({ status: 401, code: 'invalid_mfa_proof' })
    expect(await s.events('mfa_failed')).toHaveLength(2)
  })

  test('exactly one proof; malformed codes are 422 and do not count as failures', async () => {
    s = await mfaSetup()
    const { u, secret, recoveryCodes } = await withTotp()
    const { mfaToken } = await s.login.startMfa(u.id)
    expect(await caught(async () => await s.login.completeMfa(mfaToken, {}))).toMatchObject({ status: 422 })
    expect(await caught(async () => await s.login.completeMfa(mfaToken, { totp: '123456', recoveryCode: recoveryCodes[0]! }))).toMatchObject({ status: 422 })
    for (let i = 0; i < 10; i++) expect(await caught(async () => await s.login.completeMfa(mfaToken, { totp: 'abc' }))).toMatchObject({ status: 422, code: 'invalid_code' })
    expect(await caught(async () => await s.login.completeMfa(mfaToken, { recoveryCode: '!' }))).toMatchObject({ status: 422, code: 'invalid_code' })
    expect(await s.events('mfa_failed')).toHaveLength(0)
    expect((await s.login.completeMfa(mfaToken, { totp: codeAt(secret, s.clock.now()) })).userId).toBe(u.id)
  })

  test('a TOTP code cannot be used twice across two logins (replay through the login flow)', async () => {
    s = await mfaSetup()
    const { u, secret } = await withTotp()
    const code = codeAt(secret, s.clock.now())
    await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { totp: code })
    expect(await caught(async () => await s.login.completeMfa((await s.login.startMfa(u.id)).mfaToken, { totp: code }))).toMatchObject({ status: 401, code: 'invalid_mfa_proof' })
  })
})
