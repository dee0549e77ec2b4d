/**
 * Regression (outside review): adding a factor needed no recent proof, so a stolen or stale session could
 * enrol its own TOTP (and take the recovery codes) or a passkey and lock the owner out. Adding now needs
 * the same step-up as removing, except the first factor of a session a role confines to enrolment.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { expectProblem, grantRoleDirect, makeApp, signUp, STRONG_PASSWORD, type TestApp } from '../../helpers'
import { codeAt } from '../../support/mfa'
import { SoftAuthenticator } from '../../support/soft-authenticator'

let a: TestApp
afterEach(() => a?.close())

// 30 s is the shortest step-up window; passkey challenges live longer, so a challenge outlives freshness.
const STALE = 31_000
const app = async () => (a = await makeApp({ BULWARK_STEP_UP_TTL: '30s' }))
const reauth = async (token: string) => expect((await a.req('POST', '/v1/me/reauthenticate', { token, body: { password: STRONG_PASSWORD } })).status).toBe(204)
const stepUpRefused = (r: Awaited<ReturnType<TestApp['req']>>) => expectProblem(r, 401, 'reauthentication_required')

describe('adding a factor needs a recent proof', () => {
  test('TOTP start and confirm: a stale session is refused and changes nothing; after re-authentication both pass', async () => {
    await app()
    const { accessToken: token, user } = await signUp(a)
    a.clock.advance(STALE)
    stepUpRefused(await a.req('POST', '/v1/me/mfa/totp', { token }))
    expect(await a.deps.mfa.totp.status(user.id)).toBe('none')
    await reauth(token)
    const e = await a.req('POST', '/v1/me/mfa/totp', { token })
    expect(e.status).toBe(200)
    a.clock.advance(STALE)
    stepUpRefused(await a.req('POST', '/v1/me/mfa/totp/confirm', { token, body: { code: codeAt(e.body.secret, a.clock.now()) } }))
    expect(await a.deps.mfa.totp.status(user.id)).toBe('pending')
    expect(await a.deps.mfa.recovery.remaining(user.id)).toBe(0)
    await reauth(token)
    const c = await a.req('POST', '/v1/me/mfa/totp/confirm', { token, body: { code: codeAt(e.body.secret, a.clock.now()) } })
    expect(c.status).toBe(200)
    expect(c.body.recoveryCodes).toHaveLength(10)

    // Regenerating recovery codes: same rule (a fresh TOTP proof counts as well as the password).
    a.clock.advance(STALE)
    stepUpRefused(await a.req('POST', '/v1/me/mfa/recovery-codes', { token }))
    a.clock.advance(30_000)
    expect((await a.req('POST', '/v1/me/reauthenticate', { token, body: { totp: codeAt(e.body.secret, a.clock.now()) } })).status).toBe(204)
    expect((await a.req('POST', '/v1/me/mfa/recovery-codes', { token })).status).toBe(200)
  })

  test('passkey options and registration: a stale session is refused at each step; a fresh one registers', async () => {
    await app()
    const { accessToken: token, user } = await signUp(a)
    const auth = await SoftAuthenticator.create('http://localhost:3000')
    a.clock.advance(STALE)
    stepUpRefused(await a.req('POST', '/v1/me/passkeys/options', { token }))
    await reauth(token)
    const opts = await a.req('POST', '/v1/me/passkeys/options', { token })
    expect(opts.status).toBe(200)
    const response = await auth.register(opts.body)
    a.clock.advance(STALE)
    stepUpRefused(await a.req('POST', '/v1/me/passkeys', { token, body: { response } }))
    expect(await a.deps.mfa.passkeys.count(user.id)).toBe(0)
    await reauth(token)
    expect((await a.req('POST', '/v1/me/passkeys', { token, body: { response, name: 'Laptop' } })).status).toBe(201)
    expect(await a.deps.mfa.passkeys.count(user.id)).toBe(1)
  })

  test('the first enrolment of a session confined to enrolment by a role needs no step-up (TOTP and passkey)', async () => {
    await app()
    for (const kind of ['totp', 'passkey'] as const) {
      const { email, user } = await signUp(a)
      await grantRoleDirect(a, user.id, 'admin')
      const token = (await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })).body.accessToken
      expectProblem(await a.req('GET', '/v1/users', { token }), 403, 'mfa_enrollment_required')
      a.clock.advance(STALE)
      if (kind === 'totp') {
        const e = await a.req('POST', '/v1/me/mfa/totp', { token })
        expect(e.status).toBe(200)
        a.clock.advance(STALE)
        expect((await a.req('POST', '/v1/me/mfa/totp/confirm', { token, body: { code: codeAt(e.body.secret, a.clock.now()) } })).status).toBe(200)
      } else {
        const auth = await SoftAuthenticator.create('http://localhost:3000')
        const opts = await a.req('POST', '/v1/me/passkeys/options', { token })
        expect(opts.status).toBe(200)
        a.clock.advance(STALE)
        expect((await a.req('POST', '/v1/me/passkeys', { token, body: { response: await auth.register(opts.body) } })).status).toBe(201)
      }
      expect((await a.req('GET', '/v1/users', { token })).status).toBe(200)
    }
  })

  test('a confined session whose user already has a factor (enrolled in another session) is not exempt', async () => {
    await app()
    const { email, user } = await signUp(a)
    const login = async () => (await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })).body.accessToken as string
    const first = await login()
    const second = await login()
    await grantRoleDirect(a, user.id, 'admin')
    const e = await a.req('POST', '/v1/me/mfa/totp', { token: first })
    expect((await a.req('POST', '/v1/me/mfa/totp/confirm', { token: first, body: { code: codeAt(e.body.secret, a.clock.now()) } })).status).toBe(200)
    // `second` is still password-only, hence confined; stale, it must not add a passkey of its own.
    a.clock.advance(STALE)
    expectProblem(await a.req('GET', '/v1/users', { token: second }), 403, 'mfa_enrollment_required')
    stepUpRefused(await a.req('POST', '/v1/me/passkeys/options', { token: second }))
  })
})
