import { afterEach, describe, expect, test } from 'bun:test'
import { STATS_TTL_MS } from '../../src/modules/audit/service'
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

describe('GET /v1/audit?userId', () => {
  test('pages through every event where the user is the actor, the target or both, newest first, each once', async () => {
    t = await makeAdminApp()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    const u = await seedUser(t.deps)
    const other = await seedUser(t.deps)
    const shapes: [string | null, string | null][] = [[u, null], [other, other], [null, u], [u, u], [other, u], [u, other], [other, null], [u, u], [null, u]]
    for (const [actorId, targetId] of shapes) await t.deps.audit.record({ type: 'role_granted', outcome: 'success', actorId, targetId })
    const seen: { id: number; actorId: string | null; targetId: string | null }[] = []
    let cursor: string | null = null
    for (let page = 0; page < 20; page++) {
      const r = await t.as(admin, 'GET', `/v1/audit?userId=${u}&type=role_granted&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      expect(r.status).toBe(200)
      seen.push(...r.body.items)
      cursor = r.body.nextCursor
      if (!cursor) break
    }
    const ids = seen.map((e) => e.id)
    expect(ids).toEqual([...ids].sort((a, b) => b - a))
    expect(new Set(ids).size).toBe(ids.length)
    expect(seen.map((e) => [e.actorId, e.targetId])).toEqual(shapes.filter(([a, b]) => a === u || b === u).reverse())
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

  test('one answer is served for 10 s on the clock, then counted again; concurrent calls share one count', async () => {
    t = await makeAdminApp()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    const first = await t.as(admin, 'GET', '/v1/admin/stats')
    expect(first.body.usersByStatus).toEqual({ active: 1 })
    await seedUser(t.deps)
    t.clock.advance(STATS_TTL_MS - 1)
    expect((await t.as(admin, 'GET', '/v1/admin/stats')).body.usersByStatus).toEqual({ active: 1 })
    t.clock.advance(1)
    expect((await t.as(admin, 'GET', '/v1/admin/stats')).body.usersByStatus).toEqual({ active: 2 })
    await seedUser(t.deps)
    t.clock.advance(STATS_TTL_MS)
    const [a, b] = await Promise.all([t.deps.audit.stats(0), t.deps.audit.stats(0)])
    expect(a).toBe(b)
    expect(a.usersByStatus).toEqual({ active: 3 })
  })
})
