/** Account lockout through the real sign-in route: indistinguishable from a wrong password, and every way out. */
import { afterEach, describe, expect, test } from 'bun:test'
import { expectProblem, grantRoleDirect, makeApp, sharedDatabase, signUp, STRONG_PASSWORD, tokenFromMail, type TestApp } from '../helpers'
import { sqlExec } from '../support/sql'
import { eventsOf } from '../support/admin'

let a: TestApp
afterEach(() => a?.close())

const WRONG = 'definitely the wrong passphrase'
const login = (email: string, password: string, ip = '203.0.113.10') => a.req('POST', '/v1/auth/login', { body: { email, password }, ip })

/** Fails `n` times from different addresses (so the per-IP route limit is not what stops us). */
async function fail(email: string, n: number) {
  for (let i = 0; i < n; i++) expectProblem(await login(email, WRONG, `198.51.100.${i + 1}`), 401, 'invalid_credentials')
}

/** What a client can observe of a response, minus the per-request id and rate-limit counters. */
function observable(r: { status: number; headers: Headers; body: any }) {
  const volatile = new Set(['x-request-id', 'ratelimit', 'ratelimit-remaining', 'ratelimit-reset', 'ratelimit-limit', 'ratelimit-policy'])
  return {
    status: r.status,
    body: { ...r.body, requestId: undefined },
    headers: [...r.headers.entries()].filter(([k]) => !volatile.has(k)).sort(),
  }
}

describe('account lockout on sign-in', () => {
  test('after 5 failures the right password gets exactly the answer of a wrong one', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    await fail(email, 5)
    const right = await login(email, STRONG_PASSWORD, '192.0.2.50')
    const wrong = await login(email, WRONG, '192.0.2.51')
    expect(observable(right)).toEqual(observable(wrong))
    expect(right.status).toBe(401)
    expect((await a.deps.audit.list({ type: 'account_locked', limit: 5 })).length).toBe(1)
  })

  test('the lock lasts 1 minute, then doubles on the next lock', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    await fail(email, 5)
    a.clock.advance(61_000)
    expect((await login(email, STRONG_PASSWORD, '192.0.2.60')).status).toBe(200)
    await fail(email, 5)
    a.clock.advance(61_000)
    expectProblem(await login(email, STRONG_PASSWORD, '192.0.2.61'), 401)
    a.clock.advance(60_000)
    expect((await login(email, STRONG_PASSWORD, '192.0.2.62')).status).toBe(200)
  })

  test('the owner is mailed a single-use unlock link that works', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    await fail(email, 5)
    const token = await tokenFromMail(a, email, /locked/i)
    expect((await a.req('POST', '/v1/auth/unlock', { body: { token } })).status).toBe(204)
    expect((await login(email, STRONG_PASSWORD, '192.0.2.70')).status).toBe(200)
    expectProblem(await a.req('POST', '/v1/auth/unlock', { body: { token } }), 400, 'invalid_token')
    expect((await a.deps.audit.list({ type: 'account_unlocked', limit: 5 }))[0]!.details).toMatchObject({ by: 'link' })
  })

  test('an admin unlocks through POST /v1/users/:id/unlock', async () => {
    a = await makeApp()
    const victim = await signUp(a)
    const admin = await signUp(a)
    await grantRoleDirect(a, admin.user.id, 'moderator')
    await sqlExec(a.deps, "UPDATE role_permissions SET permission = 'users:*' WHERE permission = 'users:read' AND role_id = (SELECT id FROM roles WHERE name = 'moderator')")
    a.deps.invalidation.emit({ kind: 'role', id: (await a.deps.rbac.roleId('moderator'))! })
    await fail(victim.email, 5)
    const relog = await login(admin.email, STRONG_PASSWORD, '192.0.2.80')
    const un = await a.req('POST', `/v1/users/${victim.user.id}/unlock`, { token: relog.body.accessToken })
    expect(un.status, un.text).toBe(204)
    expect((await login(victim.email, STRONG_PASSWORD, '192.0.2.81')).status).toBe(200)
  })

  test('a password reset clears the lock', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    await fail(email, 5)
    await a.req('POST', '/v1/auth/password/forgot', { body: { email } })
    const token = await tokenFromMail(a, email, /reset/i)
    const fresh = 'a fresh passphrase for after the lock'
    expect((await a.req('POST', '/v1/auth/password/reset', { body: { token, password: fresh } })).status).toBe(204)
    expect((await login(email, fresh, '192.0.2.90')).status).toBe(200)
  })

  test('the lock survives a restart', async () => {
    const { env, drop } = await sharedDatabase('bw-lock-')
    try {
      a = await makeApp(env)
      const { email } = await signUp(a)
      await fail(email, 5)
      const now = a.clock.now()
      await a.close()
      a = await makeApp(env)
      a.clock.set(now + 1_000)
      expectProblem(await login(email, STRONG_PASSWORD, '192.0.2.99'), 401, 'invalid_credentials')
      a.clock.set(now + 61_000)
      expect((await login(email, STRONG_PASSWORD, '192.0.2.98')).status).toBe(200)
    } finally {
      await a.close()
      await drop()
    }
  })
})

describe('sign-in rate limits through the real route', () => {
  test('a wrong password is one write: its login_failed event and its count commit together, or neither', async () => {
    a = await makeApp()
    const { email, user } = await signUp(a)
    await fail(email, 1)
    expect((await eventsOf(a.deps, 'login_failed')).length).toBe(1)
    // The count's write fails (a fault injected into the lockout service): the attempt's event goes with it.
    const target = a.deps.lockout as unknown as { write(row: unknown): Promise<void> }
    const write = target.write.bind(a.deps.lockout)
    target.write = async () => {
      throw new Error('injected: the lockout row cannot be written')
    }
    const r = await login(email, WRONG, '198.51.100.77')
    target.write = write
    expect(r.status).toBe(500)
    expect((await eventsOf(a.deps, 'login_failed')).length).toBe(1)
    await fail(email, 1)
    expect((await eventsOf(a.deps, 'login_failed')).length).toBe(2)
    expect((await a.deps.lockout.recordFailure(user.id)).failures).toBe(3) // the two that went through, and this one
  })

  test('10 logins a minute per IP, then 429 with Retry-After and the IETF headers', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    for (let i = 0; i < 10; i++) expect((await login(email, STRONG_PASSWORD, '192.0.2.200')).status).toBe(200)
    const r = await login(email, STRONG_PASSWORD, '192.0.2.200')
    const p = expectProblem(r, 429, 'rate_limited')
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(r.headers.get('ratelimit-policy')).toContain('login-ip')
    expect(p.requestId).toBeTruthy()
  })
})
