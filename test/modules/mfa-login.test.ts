/** Second factors through the real sign-in flow: the MFA step, role-required enrolment and passwordless passkeys. */
import { afterEach, describe, expect, test } from 'bun:test'
import { expectProblem, grantRoleDirect, makeApp, signUp, STRONG_PASSWORD, type TestApp } from '../helpers'
import { codeAt } from '../support/mfa'
import { SoftAuthenticator } from '../support/soft-authenticator'

let a: TestApp
afterEach(() => a?.close())

async function enrolTotp(token: string) {
  const e = await a.req('POST', '/v1/me/mfa/totp', { token })
  expect(e.status).toBe(200)
  const c = await a.req('POST', '/v1/me/mfa/totp/confirm', { token, body: { code: codeAt(e.body.secret, a.clock.now()) } })
  expect(c.status).toBe(200)
  return { secret: e.body.secret as string, recoveryCodes: c.body.recoveryCodes as string[] }
}

describe('the MFA step of sign-in', () => {
  test('password then TOTP: tokens only after the second factor; a replayed code is refused; the next step works', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    const { secret } = await enrolTotp(accessToken)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).body.mfa).toEqual({ totp: true, passkeys: 0 })
    a.clock.advance(30_000)
    const first = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expect(first.status).toBe(200)
    expect(first.body).toMatchObject({ mfaRequired: true })
    expect(first.body.accessToken).toBeUndefined()
    expect(first.body.methods).toContain('totp')
    const code = codeAt(secret, a.clock.now())
    const ok = await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: first.body.mfaToken, totp: code } })
    expect(ok.status).toBe(200)
    expect(ok.body.accessToken).toBeTruthy()
    expect((await a.req('GET', '/v1/me', { token: ok.body.accessToken })).status).toBe(200)
    // The mfaToken is single-use, and the same code cannot be used again in another attempt.
    expectProblem(await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: first.body.mfaToken, totp: code } }), 401)
    const second = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expectProblem(await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: second.body.mfaToken, totp: code } }), 401)
    a.clock.advance(30_000)
    expect((await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: second.body.mfaToken, totp: codeAt(secret, a.clock.now()) } })).status).toBe(200)
  })

  test('repeated second-factor failures lock the MFA step through the shared lockout service', async () => {
    a = await makeApp()
    const { email, accessToken, user } = await signUp(a)
    const { secret } = await enrolTotp(accessToken)
    a.clock.advance(30_000)
    const l = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    for (let i = 0; i < 5; i++) expectProblem(await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: l.body.mfaToken, totp: '000000' } }), 401)
    expect((await a.deps.lockout.isLocked(user.id, 'mfa')).locked).toBe(true)
    const l2 = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    const r = await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: l2.body.mfaToken, totp: codeAt(secret, a.clock.now()) } })
    expectProblem(r, 429, 'mfa_locked')
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0)
    expect((await a.deps.audit.list({ type: 'mfa_locked', limit: 5 })).length).toBe(1)
  })

  test('a recovery code works exactly once', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    const { recoveryCodes } = await enrolTotp(accessToken)
    expect(recoveryCodes.length).toBe(10)
    const l1 = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expect((await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: l1.body.mfaToken, recoveryCode: recoveryCodes[0] } })).status).toBe(200)
    const l2 = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expectProblem(await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: l2.body.mfaToken, recoveryCode: recoveryCodes[0] } }), 401)
  })

  test('bad inputs are 4xx problem documents', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    await enrolTotp(accessToken)
    const l = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expectProblem(await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: l.body.mfaToken, totp: '12ab56' } }), 422)
    expectProblem(await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: l.body.mfaToken, totp: '1'.repeat(40) } }), 422)
    expectProblem(await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: 'x'.repeat(40), totp: '123456' } }), 401)
    expectProblem(await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: l.body.mfaToken, webauthn: { id: 'x', rawId: 'x', type: 'public-key', response: { clientDataJSON: '!!', authenticatorData: 'x', signature: 'x' }, clientExtensionResults: {} } } }), 422)
  })
})

describe('step-up', () => {
  test('removing a factor needs a recent proof; POST /v1/me/reauthenticate gives one', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    const { secret } = await enrolTotp(accessToken)
    a.clock.advance(10 * 60_000)
    expectProblem(await a.req('DELETE', '/v1/me/mfa/totp', { token: accessToken }), 401, 'reauthentication_required')
    expectProblem(await a.req('POST', '/v1/me/reauthenticate', { token: accessToken, body: { password: 'not my password at all' } }), 401, 'invalid_credentials')
    expectProblem(await a.req('POST', '/v1/me/reauthenticate', { token: accessToken, body: {} }), 422)
    expectProblem(await a.req('POST', '/v1/me/reauthenticate', { token: accessToken, body: { password: STRONG_PASSWORD, totp: '123456' } }), 422)
    expect((await a.req('POST', '/v1/me/reauthenticate', { token: accessToken, body: { totp: codeAt(secret, a.clock.now()) } })).status).toBe(204)
    expect((await a.req('DELETE', '/v1/me/mfa/totp', { token: accessToken })).status).toBe(204)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).body.mfa.totp).toBe(false)
  })

  test('a password proof works too, and wrong ones count towards the lockout', async () => {
    a = await makeApp()
    const { accessToken, user } = await signUp(a)
    await enrolTotp(accessToken)
    a.clock.advance(6 * 60_000)
    for (let i = 0; i < 5; i++) await a.req('POST', '/v1/me/reauthenticate', { token: accessToken, body: { password: 'not my password at all' } })
    expect((await a.deps.lockout.isLocked(user.id, 'password')).locked).toBe(true)
    expectProblem(await a.req('POST', '/v1/me/reauthenticate', { token: accessToken, body: { password: STRONG_PASSWORD } }), 401)
    a.clock.advance(61_000)
    expect((await a.req('POST', '/v1/me/reauthenticate', { token: accessToken, body: { password: STRONG_PASSWORD } })).status).toBe(204)
    expect((await a.req('POST', '/v1/me/mfa/recovery-codes', { token: accessToken })).status).toBe(200)
  })
})

describe('MFA required by role', () => {
  test('an admin without a factor gets a session limited to enrolment until they enrol', async () => {
    a = await makeApp()
    const { email, user } = await signUp(a)
    await grantRoleDirect(a, user.id, 'admin')
    const l = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expect(l.status).toBe(200)
    const token = l.body.accessToken
    expectProblem(await a.req('GET', '/v1/users', { token }), 403, 'mfa_enrollment_required')
    expectProblem(await a.req('PATCH', '/v1/me', { token, body: { name: 'x' } }), 403, 'mfa_enrollment_required')
    expect((await a.req('GET', '/v1/me', { token })).status).toBe(200)
    await enrolTotp(token)
    expect((await a.req('GET', '/v1/users', { token })).status).toBe(200)
  })
})

describe('passkeys end to end over HTTP', () => {
  test('register from a session, then passwordless sign-in; a replayed assertion is refused', async () => {
    a = await makeApp()
    const { accessToken, user } = await signUp(a)
    const auth = await SoftAuthenticator.create('http://localhost:3000')
    const opts = await a.req('POST', '/v1/me/passkeys/options', { token: accessToken })
    expect(opts.status).toBe(200)
    const reg = await a.req('POST', '/v1/me/passkeys', { token: accessToken, body: { response: await auth.register(opts.body), name: 'Laptop' } })
    expect(reg.status).toBe(201)
    const lo = await a.req('POST', '/v1/auth/passkey/options')
    expect(lo.status).toBe(200)
    const assertion = await auth.assert(lo.body)
    const signedIn = await a.req('POST', '/v1/auth/passkey/verify', { body: { response: assertion } })
    expect(signedIn.status).toBe(200)
    expect(signedIn.body.user.id).toBe(user.id)
    expectProblem(await a.req('POST', '/v1/auth/passkey/verify', { body: { response: assertion } }), 400)
  })

  test('a passkey as the second factor of a password sign-in', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    const auth = await SoftAuthenticator.create('http://localhost:3000')
    const opts = await a.req('POST', '/v1/me/passkeys/options', { token: accessToken })
    await a.req('POST', '/v1/me/passkeys', { token: accessToken, body: { response: await auth.register(opts.body) } })
    const l = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expect(l.body.methods).toContain('webauthn')
    const wo = await a.req('POST', '/v1/auth/passkey/options', { body: { mfaToken: l.body.mfaToken } })
    expect(wo.status).toBe(200)
    const v = await a.req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: l.body.mfaToken, webauthn: await auth.assert(wo.body) } })
    expect(v.status).toBe(200)
  })

  test('a passkey from another origin is refused', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    const evil = await SoftAuthenticator.create('https://evil.example.com')
    const opts = await a.req('POST', '/v1/me/passkeys/options', { token: accessToken })
    expectProblem(await a.req('POST', '/v1/me/passkeys', { token: accessToken, body: { response: await evil.register(opts.body) } }), 400)
  })
})
