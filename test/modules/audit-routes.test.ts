import { afterEach, describe, expect, test } from 'bun:test'
import { expectProblem } from '../helpers'
import { makeAdminApp, seedUser } from '../support/admin'

let t: Awaited<ReturnType<typeof makeAdminApp>>
afterEach(() => t?.close())

describe('GET /v1/audit', () => {
  test('needs audit:read; lists newest first with filters and keyset pagination', async () => {
    t = await makeAdminApp()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    const plain = await seedUser(t.deps)
    const victim = await seedUser(t.deps)
    await t.deps.audit.record({ type: 'login_failed', outcome: 'failure', targetId: victim })
    t.clock.advance(60_000)
    await t.deps.audit.record({ type: 'login', outcome: 'success', actorId: victim, targetId: victim })
    await t.deps.audit.record({ type: 'login', outcome: 'success', actorId: plain, targetId: plain })
    expectProblem(await t.as(undefined, 'GET', '/v1/audit'), 401)
    expectProblem(await t.as(plain, 'GET', '/v1/audit'), 403, 'forbidden')
    const all = await t.as(admin, 'GET', '/v1/audit?limit=2')
    expect(all.status).toBe(200)
    expect(all.body.items.length).toBe(2)
    expect(all.body.items[0].id).toBeGreaterThan(all.body.items[1].id)
    const next = await t.as(admin, 'GET', `/v1/audit?limit=2&cursor=${encodeURIComponent(all.body.nextCursor)}`)
    expect(next.body.items[0].id).toBeLessThan(all.body.items[1].id)
    const byUser = await t.as(admin, 'GET', `/v1/audit?userId=${victim}`)
    expect(byUser.body.items.map((e: { type: string }) => e.type).sort()).toEqual(['login', 'login_failed'])
    const byType = await t.as(admin, 'GET', `/v1/audit?type=login_failed&userId=${victim}`)
    expect(byType.body.items.length).toBe(1)
    const since = new Date(t.clock.now() - 1_000).toISOString()
    const recent = await t.as(admin, 'GET', `/v1/audit?userId=${victim}&since=${encodeURIComponent(since)}`)
    expect(recent.body.items.map((e: { type: string }) => e.type)).toEqual(['login'])
    expectProblem(await t.as(admin, 'GET', '/v1/audit?since=yesterday'), 422, 'validation_failed')
    expectProblem(await t.as(admin, 'GET', '/v1/audit?type=DROP%20TABLE'), 422)
    expectProblem(await t.as(admin, 'GET', '/v1/audit?cursor=abc.def'), 400, 'invalid_cursor')
  })
})

describe('GET /v1/admin/stats', () => {
  test('counts users by role and status and sign-ins per day', async () => {
    t = await makeAdminApp()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    await seedUser(t.deps)
    await seedUser(t.deps, { status: 'disabled' })
    await t.deps.audit.record({ type: 'login', outcome: 'success', actorId: admin })
    await t.deps.audit.record({ type: 'login_failed', outcome: 'failure' })
    await t.deps.audit.record({ type: 'login_failed', outcome: 'failure' })
    expectProblem(await t.as(await seedUser(t.deps), 'GET', '/v1/admin/stats'), 403)
    const r = await t.as(admin, 'GET', '/v1/admin/stats')
    expect(r.status).toBe(200)
    expect(r.body.usersByStatus).toEqual({ active: 3, disabled: 1 })
    expect(r.body.usersByRole.admin).toBe(1)
    expect(r.body.usersByRole.user).toBe(3)
    const today = new Date(t.clock.now()).toISOString().slice(0, 10)
    expect(r.body.loginsPerDay).toEqual([{ day: today, logins: 1, failures: 2 }])
  })
})
