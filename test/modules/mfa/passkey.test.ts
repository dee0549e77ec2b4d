import { afterEach, describe, expect, test } from 'bun:test'
import { Value } from '@sinclair/typebox/value'
import { encodeCBOR } from '@levischuck/tiny-cbor'
import { AuthenticationResponseSchema, RegistrationResponseSchema } from '../../../src/modules/mfa/model'
import { SoftAuthenticator } from '../../support/soft-authenticator'
import { caught, mfaSetup } from '../../support/mfa'
import { sqlRows } from '../../support/sql'

let s: Awaited<ReturnType<typeof mfaSetup>>
afterEach(() => s?.close())

/** A user with one registered passkey on a fresh soft authenticator. */
async function registered() {
  const u = await s.addUser()
  const auth = await SoftAuthenticator.create()
  const options = await s.passkeys.registrationOptions(u)
  const view = await s.passkeys.verifyRegistration(u.id, await auth.register(options), 'Laptop')
  return { u, auth, view }
}

describe('PasskeyService registration', () => {
  test('options: rp, user, preferred UV and resident key, attestation none, excludeCredentials', async () => {
    s = await mfaSetup()
    const { u, auth } = await registered()
    const o = await s.passkeys.registrationOptions(u)
    expect(o.rp).toEqual({ name: 'Bulwark', id: 'localhost' })
    expect(o.user.name).toBe(u.email)
    expect(Buffer.from(o.user.id, 'base64url').toString()).toBe(u.id)
    expect(o.attestation).toBe('none')
    expect(o.authenticatorSelection).toMatchObject({ userVerification: 'preferred', residentKey: 'preferred' })
    expect(o.excludeCredentials?.map((c) => c.id)).toEqual([auth.id])
    expect(o.timeout).toBe(300_000)
    const ch = (await sqlRows<Record<string, any>>(s.deps, "SELECT * FROM challenges WHERE kind = 'webauthn_register' ORDER BY created_at DESC"))[0]!
    expect(ch.user_id).toBe(u.id)
    expect(ch.expires_at - ch.created_at).toBe(300_000)
    expect(ch.secret_hash).not.toContain(o.challenge)
  })

  test('register stores credential id, public key, counter, transports, device type, backed up, name', async () => {
    s = await mfaSetup()
    const { u, auth, view } = await registered()
    expect(view).toMatchObject({ name: 'Laptop', transports: ['internal'], deviceType: 'singleDevice', backedUp: false, lastUsedAt: null })
    const row = (await sqlRows<Record<string, any>>(s.deps, 'SELECT * FROM passkeys WHERE user_id = ?', [u.id]))[0]!
    expect(row.credential_id).toBe(auth.id)
    expect(Number(row.counter)).toBe(0) // int8 on PostgreSQL: a string from the raw query
    expect(row.public_key.length).toBeGreaterThan(60)
    expect(await s.passkeys.list(u.id)).toEqual([view])
    expect(await s.events('passkey_added')).toHaveLength(1)
  })

  test('the registration challenge is single-use and bound to its user', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const other = await s.addUser()
    const auth = await SoftAuthenticator.create()
    const options = await s.passkeys.registrationOptions(u)
    const resp = await auth.register(options)
    expect(await caught(() => s.passkeys.verifyRegistration(other.id, resp))).toMatchObject({ status: 400, code: 'webauthn_failed' })
    // that attempt spent the challenge
    expect(await caught(() => s.passkeys.verifyRegistration(u.id, resp))).toMatchObject({ status: 400, code: 'webauthn_failed' })
    const o2 = await s.passkeys.registrationOptions(u)
    await s.passkeys.verifyRegistration(u.id, await auth.register(o2))
    expect(await caught(async () => s.passkeys.verifyRegistration(u.id, await auth.register(o2)))).toMatchObject({ status: 400 })
  })

  test('registration: wrong origin, wrong RP id, expired challenge, ceremony type, duplicate credential', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const auth = await SoftAuthenticator.create()
    const bad = async (k: Parameters<SoftAuthenticator['register']>[1]) => caught(async () => s.passkeys.verifyRegistration(u.id, await auth.register(await s.passkeys.registrationOptions(u), k)))
    expect(await bad({ origin: 'https://evil.example' })).toMatchObject({ status: 400, code: 'webauthn_failed' })
    expect(await bad({ rpId: 'evil.example' })).toMatchObject({ status: 400, code: 'webauthn_failed' })
    expect(await bad({ type: 'webauthn.get' })).toMatchObject({ status: 400, code: 'webauthn_failed' })
    const o = await s.passkeys.registrationOptions(u)
    s.clock.advance(300_001)
    expect(await caught(async () => s.passkeys.verifyRegistration(u.id, await auth.register(o)))).toMatchObject({ status: 400 })
    await s.passkeys.verifyRegistration(u.id, await auth.register(await s.passkeys.registrationOptions(u)))
    // the same authenticator again (for another user, too) is a conflict
    const v = await s.addUser()
    expect(await caught(async () => s.passkeys.verifyRegistration(v.id, await auth.register(await s.passkeys.registrationOptions(v))))).toMatchObject({ status: 409, code: 'passkey_exists' })
  })

  test('garbage CBOR, garbage client data and broken attestation objects are 400, never a crash', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const auth = await SoftAuthenticator.create()
    const b64 = (b: Uint8Array | string) => Buffer.from(b).toString('base64url')
    const variants = [
      (r: any) => ({ ...r, response: { ...r.response, attestationObject: b64(new Uint8Array([0xff, 0x00, 0x13, 0x37])) } }),
      (r: any) => ({ ...r, response: { ...r.response, attestationObject: b64(encodeCBOR(new Map([['fmt', 'none']]))) } }),
      (r: any) => ({ ...r, response: { ...r.response, attestationObject: b64(encodeCBOR(new Map<string, any>([['fmt', 'packed'], ['attStmt', new Map()], ['authData', new Uint8Array(10)]]))) } }),
      (r: any) => ({ ...r, response: { ...r.response, attestationObject: '' } }),
      (r: any) => ({ ...r, id: 'AAAA', rawId: 'AAAA' }),
    ]
    for (const mutate of variants) {
      const resp = mutate(await auth.register(await s.passkeys.registrationOptions(u)))
      expect(await caught(() => s.passkeys.verifyRegistration(u.id, resp))).toMatchObject({ status: 400, code: 'webauthn_failed' })
    }
    for (const cd of ['', b64('not json'), b64('null'), b64('{"challenge":5}'), b64('[]')]) {
      const resp = await auth.register(await s.passkeys.registrationOptions(u))
      expect(await caught(() => s.passkeys.verifyRegistration(u.id, { ...resp, response: { ...resp.response, clientDataJSON: cd } }))).toMatchObject({ status: 400 })
    }
  })
})

describe('PasskeyService authentication', () => {
  test('second factor: allowCredentials are the user\'s, the challenge is bound to the user', async () => {
    s = await mfaSetup()
    const { u, auth, view } = await registered()
    const { options, challengeId } = await s.passkeys.authenticationOptions({ userId: u.id })
    expect(options.allowCredentials?.map((c) => c.id)).toEqual([auth.id])
    expect(options.rpId).toBe('localhost')
    const r = await s.passkeys.verifyAuthentication(await auth.assert(options), { userId: u.id, challengeId })
    expect(r).toEqual({ userId: u.id, userVerified: true, passkeyId: view.id })
    expect((await s.passkeys.list(u.id))[0]!.lastUsedAt).not.toBeNull()
  })

  test('passwordless: no allowCredentials; the credential names the user; UV reported', async () => {
    s = await mfaSetup()
    const { u, auth } = await registered()
    const { options } = await s.passkeys.authenticationOptions()
    expect(options.allowCredentials ?? []).toEqual([])
    const r = await s.passkeys.verifyAuthentication(await auth.assert(options))
    expect(r.userId).toBe(u.id)
    expect(r.userVerified).toBe(true)
    const { options: o2 } = await s.passkeys.authenticationOptions()
    expect((await s.passkeys.verifyAuthentication(await auth.assert(o2, { uv: false }))).userVerified).toBe(false)
  })

  test('a replayed assertion is refused (the challenge is spent)', async () => {
    s = await mfaSetup()
    const { auth } = await registered()
    const { options } = await s.passkeys.authenticationOptions()
    const a = await auth.assert(options)
    await s.passkeys.verifyAuthentication(a)
    expect(await caught(() => s.passkeys.verifyAuthentication(a))).toMatchObject({ status: 400, code: 'webauthn_failed' })
  })

  test('wrong challenge, wrong origin, wrong RP id, expired challenge: 400 webauthn_failed', async () => {
    s = await mfaSetup()
    const { auth } = await registered()
    const fresh = async () => (await s.passkeys.authenticationOptions()).options
    expect(await caught(async () => s.passkeys.verifyAuthentication(await auth.assert(await fresh(), { challenge: Buffer.from('made-up-challenge-000000000').toString('base64url') })))).toMatchObject({ status: 400, code: 'webauthn_failed' })
    expect(await caught(async () => s.passkeys.verifyAuthentication(await auth.assert(await fresh(), { origin: 'https://evil.example' })))).toMatchObject({ status: 400, code: 'webauthn_failed' })
    expect(await caught(async () => s.passkeys.verifyAuthentication(await auth.assert(await fresh(), { rpId: 'evil.example' })))).toMatchObject({ status: 400, code: 'webauthn_failed' })
    expect(await caught(async () => s.passkeys.verifyAuthentication(await auth.assert(await fresh(), { type: 'webauthn.create' })))).toMatchObject({ status: 400, code: 'webauthn_failed' })
    const o = await fresh()
    s.clock.advance(300_001)
    expect(await caught(async () => s.passkeys.verifyAuthentication(await auth.assert(o)))).toMatchObject({ status: 400, code: 'webauthn_failed' })
  })

  test('a registration challenge cannot be used to sign in, nor a login challenge to register', async () => {
    s = await mfaSetup()
    const { u, auth } = await registered()
    const ro = await s.passkeys.registrationOptions(u)
    expect(await caught(async () => s.passkeys.verifyAuthentication(await auth.assert({ challenge: ro.challenge, rpId: 'localhost' })))).toMatchObject({ status: 400 })
    const { options } = await s.passkeys.authenticationOptions({ userId: u.id })
    const other = await SoftAuthenticator.create()
    expect(await caught(async () => s.passkeys.verifyRegistration(u.id, await other.register({ ...ro, challenge: options.challenge })))).toMatchObject({ status: 400 })
  })

  test("challenges are bound: a user's challenge is not another's, nor a passwordless one's, nor another attempt's", async () => {
    s = await mfaSetup()
    const a = await registered()
    const b = await registered()
    const forA = await s.passkeys.authenticationOptions({ userId: a.u.id })
    expect(await caught(async () => s.passkeys.verifyAuthentication(await b.auth.assert(forA.options), { userId: b.u.id }))).toMatchObject({ status: 400 })
    const forA2 = await s.passkeys.authenticationOptions({ userId: a.u.id })
    expect(await caught(async () => s.passkeys.verifyAuthentication(await a.auth.assert(forA2.options)))).toMatchObject({ status: 400 })
    const open = await s.passkeys.authenticationOptions()
    expect(await caught(async () => s.passkeys.verifyAuthentication(await a.auth.assert(open.options), { userId: a.u.id }))).toMatchObject({ status: 400 })
    const one = await s.passkeys.authenticationOptions({ userId: a.u.id })
    const two = await s.passkeys.authenticationOptions({ userId: a.u.id })
    expect(await caught(async () => s.passkeys.verifyAuthentication(await a.auth.assert(one.options), { userId: a.u.id, challengeId: two.challengeId }))).toMatchObject({ status: 400 })
  })

  test("unknown credential, or another user's credential as their second factor: 401 invalid_credentials", async () => {
    s = await mfaSetup()
    const a = await registered()
    const b = await registered()
    const stranger = await SoftAuthenticator.create()
    const { options } = await s.passkeys.authenticationOptions()
    expect(await caught(async () => s.passkeys.verifyAuthentication(await stranger.assert({ ...options, rpId: 'localhost' })))).toMatchObject({ status: 401, code: 'invalid_credentials' })
    const forA = await s.passkeys.authenticationOptions({ userId: a.u.id })
    expect(await caught(async () => s.passkeys.verifyAuthentication(await b.auth.assert(forA.options), { userId: a.u.id }))).toMatchObject({ status: 401, code: 'invalid_credentials' })
    // a userHandle that names someone else than the credential's owner
    const o = await s.passkeys.authenticationOptions()
    const assertion = await a.auth.assert(o.options)
    assertion.response.userHandle = Buffer.from(b.u.id).toString('base64url')
    expect(await caught(() => s.passkeys.verifyAuthentication(assertion))).toMatchObject({ status: 401 })
  })

  test('a signature by another key over a known credential id is refused', async () => {
    s = await mfaSetup()
    const a = await registered()
    const forger = await SoftAuthenticator.create()
    const { options } = await s.passkeys.authenticationOptions()
    const forged = await forger.assert({ ...options, rpId: 'localhost' }, { credentialId: a.auth.id })
    expect(await caught(() => s.passkeys.verifyAuthentication(forged))).toMatchObject({ status: 400, code: 'webauthn_failed' })
  })

  test('a counter going backwards is refused and recorded as passkey_cloned_suspected', async () => {
    s = await mfaSetup()
    const { u, auth } = await registered()
    const login = async (k = {}) => s.passkeys.verifyAuthentication(await auth.assert((await s.passkeys.authenticationOptions()).options, k))
    await login({ counter: 10 })
    expect(await caught(() => login({ counter: 7 }))).toMatchObject({ status: 401 })
    expect(await caught(() => login({ counter: 10 }))).toMatchObject({ status: 401 })
    const ev = await s.events('passkey_cloned_suspected')
    expect(ev).toHaveLength(2)
    expect(ev[1]!.details).toMatchObject({ stored: 10, received: 7 })
    expect(ev[1]!.targetId).toBe(u.id)
    await login({ counter: 11 })
  })

  test('authenticators without a counter (always 0) keep working', async () => {
    s = await mfaSetup()
    const { auth } = await registered()
    for (let i = 0; i < 3; i++) await s.passkeys.verifyAuthentication(await auth.assert((await s.passkeys.authenticationOptions()).options, { counter: 0 }))
    expect(await s.events('passkey_cloned_suspected')).toHaveLength(0)
  })

  test('garbage assertions are 4xx', async () => {
    s = await mfaSetup()
    const { auth } = await registered()
    const b64 = (b: Uint8Array | string) => Buffer.from(b).toString('base64url')
    const mutations = [
      (r: any) => ({ ...r, response: { ...r.response, authenticatorData: b64(new Uint8Array(5)) } }),
      (r: any) => ({ ...r, response: { ...r.response, signature: b64(new Uint8Array([0x30, 0x02, 0x00])) } }),
      (r: any) => ({ ...r, response: { ...r.response, signature: '' } }),
      (r: any) => ({ ...r, response: { ...r.response, authenticatorData: b64(encodeCBOR(new Map([['x', 1]]))) } }),
    ]
    for (const m of mutations) {
      const { options } = await s.passkeys.authenticationOptions()
      const e = await caught(async () => s.passkeys.verifyAuthentication(m(await auth.assert(options))))
      expect(e.status).toBeGreaterThanOrEqual(400)
      expect(e.status).toBeLessThan(500)
    }
  })
})

describe('PasskeyService management', () => {
  test("list, rename, delete; someone else's passkey is a 404", async () => {
    s = await mfaSetup()
    const a = await registered()
    const b = await registered()
    expect((await s.passkeys.rename(a.u.id, a.view.id, '  Phone ')).name).toBe('Phone')
    expect(await caught(() => s.passkeys.rename(b.u.id, a.view.id, 'mine'))).toMatchObject({ status: 404 })
    expect(await caught(() => s.passkeys.delete(b.u.id, a.view.id))).toMatchObject({ status: 404 })
    expect(await s.passkeys.count(a.u.id)).toBe(1)
    await s.recovery.regenerate(a.u.id)
    await s.passkeys.delete(a.u.id, a.view.id)
    expect(await s.passkeys.list(a.u.id)).toEqual([])
    // the last factor went, so did the recovery codes
    expect(await s.recovery.remaining(a.u.id)).toBe(0)
    expect(await s.events('passkey_removed')).toHaveLength(1)
  })
})

describe('WebAuthn request schemas', () => {
  test('real responses pass; oversized, extra or mistyped fields fail', async () => {
    s = await mfaSetup()
    const u = await s.addUser()
    const auth = await SoftAuthenticator.create()
    const reg = await auth.register(await s.passkeys.registrationOptions(u))
    expect(Value.Check(RegistrationResponseSchema, reg)).toBe(true)
    await s.passkeys.verifyRegistration(u.id, reg)
    const asn = await auth.assert((await s.passkeys.authenticationOptions()).options)
    expect(Value.Check(AuthenticationResponseSchema, asn)).toBe(true)
    const huge = 'A'.repeat(100_000)
    const badReg = [
      { ...reg, id: huge },
      { ...reg, response: { ...reg.response, attestationObject: huge } },
      { ...reg, response: { ...reg.response, clientDataJSON: 'A'.repeat(5000) } },
      { ...reg, response: { ...reg.response, transports: Array(50).fill('usb') } },
      { ...reg, response: { ...reg.response, transports: ['x'.repeat(100)] } },
      { ...reg, extra: 1 },
      { ...reg, type: 'password' },
      { ...reg, clientExtensionResults: { anything: huge } },
      { ...reg, rawId: 'not base64url!' },
    ]
    for (const b of badReg) expect(Value.Check(RegistrationResponseSchema, b)).toBe(false)
    const badAsn = [
      { ...asn, response: { ...asn.response, signature: huge } },
      { ...asn, response: { ...asn.response, authenticatorData: huge } },
      { ...asn, response: { ...asn.response, userHandle: huge } },
      { ...asn, response: { ...asn.response, extra: 'x' } },
      { ...asn, response: { clientDataJSON: asn.response.clientDataJSON } },
    ]
    for (const b of badAsn) expect(Value.Check(AuthenticationResponseSchema, b)).toBe(false)
  })
})
