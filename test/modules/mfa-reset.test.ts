/**
 * DELETE /v1/users/:id/mfa: owner-only, step-up-guarded, audited reset of another user's lost second
 * factors (account recovery). Before it, no admin route could remove a lost factor.
 */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { expectProblem, signUp, STRONG_PASSWORD } from '../helpers'
import { eventsOf, makeAdminApp, seedUser } from '../support/admin'
import { codeAt } from '../support/mfa'
import { SoftAuthenticator } from '../support/soft-authenticator'

let t: Awaited<ReturnType<typeof makeAdminApp>>
let owner: string
beforeEach(async () => {
  t = await makeAdminApp()
  owner = await seedUser(t.deps, { roles: ['owner'] })
})
afterEach(() => t.close())

/** A signed-up user with TOTP (and its 10 recovery codes) and one passkey, enrolled through the routes. */
async function userWithFactors() {
  const u = await signUp(t)
  const token = u.accessToken
  const e = await t.req('POST', '/v1/me/mfa/totp', { token })
  expect((await t.req('POST', '/v1/me/mfa/totp/confirm', { token, body: { code: codeAt(e.body.secret, t.clock.now()) } })).status).toBe(200)
  const auth = await SoftAuthenticator.create('http://localhost:3000')
  const opts = await t.req('POST', '/v1/me/passkeys/options', { token })
  expect((await t.req('POST', '/v1/me/passkeys', { token, body: { response: await auth.register(opts.body) } })).status).toBe(201)
  return u
}

const factorsOf = async (id: string) => ({ totp: await t.deps.mfa.totp.status(id), passkeys: await t.deps.mfa.passkeys.count(id), codes: await t.deps.mfa.recovery.remaining(id) })
const intact = { totp: 'active' as const, passkeys: 1, codes: 10 }

describe('DELETE /v1/users/:id/mfa', () => {
  test('an owner with a fresh proof removes TOTP, recovery codes and passkeys, ends the sessions, and it is audited for both', async () => {
    const u = await userWithFactors()
    expect(await factorsOf(u.user.id)).toEqual(intact)
    const r = await t.as(owner, 'DELETE', `/v1/users/${u.user.id}/mfa`)
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ totp: true, passkeys: 1, recoveryCodes: 10, sessionsEnded: 1 })
    expect(await factorsOf(u.user.id)).toEqual({ totp: 'none', passkeys: 0, codes: 0 })
    expectProblem(await t.req('GET', '/v1/me', { token: u.accessToken }), 401, 'invalid_token')
    // The user signs in with the password alone again (no MFA step) and can enrol afresh.
    const l = await t.req('POST', '/v1/auth/login', { body: { email: u.email, password: STRONG_PASSWORD } })
    expect(l.status).toBe(200)
    expect(l.body.accessToken).toBeTruthy()
    expect((await t.req('GET', '/v1/me', { token: l.body.accessToken })).body.mfa).toEqual({ totp: false, passkeys: 0 })
    const events = await eventsOf(t.deps, 'mfa_reset')
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ actorId: owner, targetId: u.user.id, outcome: 'success', details: { totp: true, passkeys: 1, recoveryCodes: 10, sessionsEnded: 1 } })
    const mine = await t.req('GET', '/v1/me/events', { token: l.body.accessToken })
    expect(mine.body.items.map((e: { type: string }) => e.type)).toContain('mfa_reset')
    const owners = await t.as(owner, 'GET', '/v1/me/events')
    expect(owners.body.items.map((e: { type: string }) => e.type)).toContain('mfa_reset')
    // Nothing left to reset.
    expectProblem(await t.as(owner, 'DELETE', `/v1/users/${u.user.id}/mfa`), 409, 'no_second_factor')
  })

  test('an admin (users:write, not owner) is refused with owner_required; a plain user by the permission check', async () => {
    const u = await userWithFactors()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    expectProblem(await t.as(admin, 'DELETE', `/v1/users/${u.user.id}/mfa`), 403, 'owner_required')
    const denied = await eventsOf(t.deps, 'privilege_escalation_denied')
    expect(denied.at(-1)).toMatchObject({ actorId: admin, targetId: u.user.id, details: { rule: 'owner_only', action: 'mfa_reset' } })
    const plain = await seedUser(t.deps)
    expectProblem(await t.as(plain, 'DELETE', `/v1/users/${u.user.id}/mfa`), 403, 'forbidden')
    expect(await factorsOf(u.user.id)).toEqual(intact)
    expect((await t.req('GET', '/v1/me', { token: u.accessToken })).status).toBe(200)
    expect(await eventsOf(t.deps, 'mfa_reset')).toHaveLength(0)
  })

  test('an owner whose proof is stale must re-authenticate first', async () => {
    const u = await userWithFactors()
    const { session } = await t.deps.sessions.create({ userId: owner, transport: 'bearer', amr: ['pwd', 'otp'], meta: {} })
    t.clock.advance(t.deps.config.tokens.stepUpTtlMs + 1000)
    const { token } = await t.deps.signer.sign(owner, session.id)
    expectProblem(await t.req('DELETE', `/v1/users/${u.user.id}/mfa`, { token }), 401, 'reauthentication_required')
    expect(await factorsOf(u.user.id)).toEqual(intact)
    await t.deps.sessions.markAuthenticated(session.id, 'otp')
    expect((await t.req('DELETE', `/v1/users/${u.user.id}/mfa`, { token })).status).toBe(200)
  })

  test('not on oneself, not on another owner, 404 for an unknown user, 422 for a malformed id', async () => {
    const other = await seedUser(t.deps, { roles: ['owner'] })
    expectProblem(await t.as(owner, 'DELETE', `/v1/users/${owner}/mfa`), 403, 'forbidden')
    expectProblem(await t.as(owner, 'DELETE', `/v1/users/${other}/mfa`), 403, 'forbidden')
    expect((await eventsOf(t.deps, 'privilege_escalation_denied')).map((e) => (e.details as { rule: string }).rule)).toEqual(['self', 'target_level'])
    expectProblem(await t.as(owner, 'DELETE', '/v1/users/0190a0b0-0000-7000-8000-000000000000/mfa'), 404, 'not_found')
    expectProblem(await t.as(owner, 'DELETE', `/v1/users/${'x'.repeat(65)}/mfa`), 422, 'validation_failed')
  })
})
