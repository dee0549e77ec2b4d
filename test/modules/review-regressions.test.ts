/** Regression tests for the findings of the 2026-11-28 security review; each test names the bug it pins. */
import { afterEach, describe, expect, test } from 'bun:test'
import { expectProblem, grantRoleDirect, makeApp, signUp, STRONG_PASSWORD, type TestApp } from '../helpers'
import { sqlRows } from '../support/sql'
import { codeAt } from '../support/mfa'

let a: TestApp
afterEach(() => a?.close())

describe('security review regressions', () => {
  test('enrolling a factor in one session does not lift the MFA limit of another password-only session', async () => {
    a = await makeApp()
    const { email, user } = await signUp(a)
    await grantRoleDirect(a, user.id, 'admin')
    const victim = (await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })).body.accessToken
    const attacker = (await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD }, ip: '198.51.100.66' })).body.accessToken
    const e = await a.req('POST', '/v1/me/mfa/totp', { token: victim })
    expect((await a.req('POST', '/v1/me/mfa/totp/confirm', { token: victim, body: { code: codeAt(e.body.secret, a.clock.now()) } })).status).toBe(200)
    expect((await a.req('GET', '/v1/users', { token: victim })).status).toBe(200)
    expectProblem(await a.req('GET', '/v1/users', { token: attacker }), 403, 'mfa_enrollment_required')
    expectProblem(await a.req('PATCH', '/v1/me', { token: attacker, body: { name: 'pwned' } }), 403, 'mfa_enrollment_required')
  })

  test('a role that requires MFA limits an existing password-only session at once', async () => {
    a = await makeApp()
    const { accessToken, user } = await signUp(a)
    expect((await a.req('PATCH', '/v1/me', { token: accessToken, body: { name: 'before' } })).status).toBe(200)
    await grantRoleDirect(a, user.id, 'admin')
    expectProblem(await a.req('GET', '/v1/users', { token: accessToken }), 403, 'mfa_enrollment_required')
  })

  test('a trailing slash does not skip per-route limits or the login origin check', async () => {
    a = await makeApp()
    expectProblem(await a.req('POST', '/v1/auth/login/', { body: { email: 'a@example.com', password: 'x' } }), 404, 'not_found')
    expectProblem(await a.req('POST', '/v1/auth/password/forgot/', { body: { email: 'a@example.com' } }), 404)
    expectProblem(await a.req('POST', '/v1/auth//login', { body: { email: 'a@example.com', password: 'x' } }), 404)
  })

  test('POST /v1/me/password counts wrong current passwords towards the lockout', async () => {
    a = await makeApp()
    const { accessToken, user } = await signUp(a)
    for (let i = 0; i < 5; i++) {
      expectProblem(await a.req('POST', '/v1/me/password', { token: accessToken, body: { currentPassword: 'wrong guess number x', password: 'a new long passphrase 77' } }), 401)
    }
    expect((await a.deps.lockout.isLocked(user.id, 'password')).locked).toBe(true)
    expectProblem(await a.req('POST', '/v1/me/password', { token: accessToken, body: { currentPassword: STRONG_PASSWORD, password: 'a new long passphrase 77' } }), 401)
  })

  test('delivered or kept mail no longer holds its text (tokens) in the outbox', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    await a.deps.mailWorker.deliverDue()
    const rows = await sqlRows<{ status: string; text: string }>(a.deps, 'SELECT status, text FROM mail_outbox WHERE "to" = ?', [email])
    expect(rows.length).toBe(1)
    expect(rows[0]!.status).not.toBe('pending')
    expect(rows[0]!.text).toBe('')
  })

  test('a refresh request with an Authorization header may not use the session cookie (CSRF is skipped for it)', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    const r = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD, transport: 'cookie' } })
    const cookie = r.headers.get('set-cookie')!.split(';')[0]!
    expectProblem(await a.req('POST', '/v1/auth/refresh', { headers: { cookie, authorization: 'Bearer x' } }), 401)
  })
})
