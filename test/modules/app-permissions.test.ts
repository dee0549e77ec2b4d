/** Application permissions and the policy decision API for them, through app.handle with real sessions. */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { expectProblem } from '../helpers'
import { eventsOf, makeAdminApp, seedUser } from '../support/admin'
import { sqlCount, sqlRows } from '../support/sql'

let t: Awaited<ReturnType<typeof makeAdminApp>>
let owner: string
let admin: string

beforeEach(async () => {
  t = await makeAdminApp()
  owner = await seedUser(t.deps, { roles: ['user', 'owner'] })
  admin = await seedUser(t.deps, { roles: ['user', 'admin'] })
})
afterEach(() => t.close())

const register = (name: string, as = owner) => t.as(as, 'POST', '/v1/permissions', { body: { name, description: `app ${name}` } })

/** Owner registers orders:read/refund, makes a level-40 role with orders:*, grants it to a fresh user. */
async function ordersSetup() {
  expect((await register('orders:read')).status).toBe(201)
  expect((await register('orders:refund')).status).toBe(201)
  const role = await t.as(owner, 'POST', '/v1/roles', { body: { name: 'clerk', level: 40, permissions: ['orders:*'] } })
  expect(role.status).toBe(201)
  const clerk = await seedUser(t.deps)
  expect((await t.as(owner, 'PUT', `/v1/users/${clerk}/roles/clerk`)).status).toBe(204)
  return clerk
}

const check = (body: unknown) => t.as(admin, 'POST', '/v1/authz/check', { body })

describe('registering', () => {
  test('before registration orders:read is unknown; after it a role with orders:* grants both, listed as non-built-in', async () => {
    expectProblem(await check({ userId: owner, permission: 'orders:read' }), 422, 'unknown_permission')
    const clerk = await ordersSetup()
    expect((await check({ userId: clerk, permission: 'orders:read' })).body).toEqual({ allowed: true, reason: 'granted by role clerk via orders:*' })
    expect((await check({ userId: clerk, permission: 'orders:refund' })).body.allowed).toBe(true)
    expect((await check({ userId: clerk, permission: 'users:read' })).body.allowed).toBe(false)
    const list = await t.as(admin, 'GET', '/v1/permissions')
    expect(list.body.items.find((p: any) => p.name === 'orders:read')).toEqual({ name: 'orders:read', description: 'app orders:read', builtin: false })
    expect(list.body.items.find((p: any) => p.name === 'users:read').builtin).toBe(true)
    expect((await eventsOf(t.deps, 'permission_created')).length).toBe(2)
  })

  test('built-in names and built-in resources are refused; duplicates are 409; nothing is stored', async () => {
    for (const name of ['users:read', 'users:export', 'roles:sync', 'clients:read', 'apikeys:mint', 'webhooks:fire', 'keys:rotate', 'audit:wipe']) {
      expectProblem(await register(name), 422, 'reserved_permission')
    }
    expectProblem(await register('orders:*'), 422, 'validation_failed')
    expectProblem(await register('orders:read:own'), 422, 'validation_failed')
    expect((await register('orders:read')).status).toBe(201)
    expectProblem(await register('orders:read'), 409, 'conflict')
    expect(await sqlRows(t.deps, 'SELECT name FROM app_permissions')).toEqual([{ name: 'orders:read' }])
  })

  test('registering needs roles:write', async () => {
    const plain = await seedUser(t.deps)
    expectProblem(await register('orders:read', plain), 403, 'forbidden')
  })

  test('a global wildcard role (owner *:*) holds app permissions at once (caches dropped on register)', async () => {
    expect((await check({ userId: owner, permission: 'files:read:any' })).body.allowed).toBe(true)
    await register('orders:read')
    expect((await check({ userId: owner, permission: 'orders:read' })).body.allowed).toBe(true)
  })
})

describe('escalation with app permissions', () => {
  test('an admin (who does not hold orders:*) cannot create a role holding it; the owner can', async () => {
    await register('orders:read')
    const r = await t.as(admin, 'POST', '/v1/roles', { body: { name: 'clerk', level: 40, permissions: ['orders:read'] } })
    expectProblem(r, 403, 'forbidden')
    expect((await eventsOf(t.deps, 'privilege_escalation_denied')).at(-1)!.details!.rule).toBe('permission_not_held')
    expect((await t.as(owner, 'POST', '/v1/roles', { body: { name: 'clerk', level: 40, permissions: ['orders:read'] } })).status).toBe(201)
  })
})

describe('deleting', () => {
  test('409 permission_in_use while a role holds it; cascade removes it from the role and the next check refuses', async () => {
    const clerk = await ordersSetup()
    expectProblem(await t.as(owner, 'DELETE', '/v1/permissions/orders:refund'), 409, 'permission_in_use')
    expect((await check({ userId: clerk, permission: 'orders:refund' })).body.allowed).toBe(true)
    expect((await t.as(owner, 'DELETE', '/v1/permissions/orders:refund?cascade=true')).status).toBe(204)
    // orders:* still matches orders:read, so it stays; orders:refund is gone from the registry.
    expect((await t.as(owner, 'GET', '/v1/roles')).body.items.find((r: any) => r.name === 'clerk').permissions).toEqual(['orders:*'])
    expectProblem(await check({ userId: clerk, permission: 'orders:refund' }), 422, 'unknown_permission')
    expect((await check({ userId: clerk, permission: 'orders:read' })).body.allowed).toBe(true)
    // The last one: the now-empty wildcard goes with it, and the clerk loses orders:read on the next check.
    expect((await t.as(owner, 'DELETE', '/v1/permissions/orders:read?cascade=true')).status).toBe(204)
    expect((await t.as(owner, 'GET', '/v1/roles')).body.items.find((r: any) => r.name === 'clerk').permissions).toEqual([])
    const ev = await eventsOf(t.deps, 'permission_deleted')
    expect(ev.at(-1)!.details).toMatchObject({ permission: 'orders:read', cascade: true, roles: ['clerk'] })
    await register('orders:read')
    expect((await check({ userId: clerk, permission: 'orders:read' })).body.allowed).toBe(false)
  })

  test('an unheld one deletes without cascade; built-ins are refused; unknown is 404', async () => {
    await register('orders:read')
    expect((await t.as(owner, 'DELETE', '/v1/permissions/orders:read')).status).toBe(204)
    expectProblem(await t.as(owner, 'DELETE', '/v1/permissions/orders:read'), 404, 'not_found')
    expectProblem(await t.as(owner, 'DELETE', '/v1/permissions/users:read'), 409, 'builtin_permission')
  })

  test('cascade refuses roles at or above the actor level (role_level) and changes nothing', async () => {
    await register('orders:read')
    await t.as(owner, 'POST', '/v1/roles', { body: { name: 'senior', level: 95, permissions: ['orders:read'] } })
    expectProblem(await t.as(admin, 'DELETE', '/v1/permissions/orders:read?cascade=true'), 403, 'forbidden')
    expect(await sqlCount(t.deps, "SELECT count(*) AS n FROM app_permissions WHERE name = 'orders:read'")).toBe(1)
  })
})

describe('check by token and in batches', () => {
  test('a user access token answers like its user id; an invalid token is allowed:false with a reason', async () => {
    const clerk = await ordersSetup()
    const { session } = await t.deps.sessions.create({ userId: clerk, transport: 'bearer', amr: ['pwd'], meta: {} })
    const { token } = await t.deps.signer.sign(clerk, session.id)
    expect((await check({ token, permission: 'orders:read' })).body).toEqual({ allowed: true, reason: 'granted by role clerk via orders:*' })
    expect((await check({ token: `${token.slice(0, -4)}AAAA`, permission: 'orders:read' })).body).toEqual({ allowed: false, reason: 'invalid token' })
    await t.deps.sessions.revoke(session.id, 'logout')
    expect((await check({ token, permission: 'orders:read' })).body).toEqual({ allowed: false, reason: 'invalid token' })
    expectProblem(await check({ token, userId: clerk, permission: 'orders:read' }), 422, 'validation_failed')
  })

  test('a batch answers in order, many permissions and many subjects; 1 to 100 checks; a bad item fails the whole batch', async () => {
    const clerk = await ordersSetup()
    const plain = await seedUser(t.deps)
    const r = await check({ checks: [
      { userId: clerk, permission: 'orders:read' },
      { userId: clerk, permission: 'orders:refund' },
      { userId: plain, permission: 'orders:read' },
      { userId: clerk, permission: 'files:read', resourceOwnerId: clerk },
    ] })
    expect(r.status).toBe(200)
    expect(r.body.results.map((x: any) => x.allowed)).toEqual([true, true, false, true])
    expect(r.body.results[2].reason).toBe('no role grants orders:read')
    const hundred = Array.from({ length: 100 }, () => ({ userId: clerk, permission: 'orders:read' }))
    expect((await check({ checks: hundred })).body.results.length).toBe(100)
    expectProblem(await check({ checks: [...hundred, { userId: clerk, permission: 'orders:read' }] }), 422, 'validation_failed')
    expectProblem(await check({ checks: [] }), 422, 'validation_failed')
    expectProblem(await check({ checks: [{ userId: clerk, permission: 'nope:read' }] }), 422, 'unknown_permission')
    expectProblem(await check({ checks: [{ permission: 'orders:read' }] }), 422, 'validation_failed')
    expectProblem(await check({ userId: clerk, permission: 'orders:read', checks: [{ userId: clerk, permission: 'orders:read' }] }), 422, 'validation_failed')
  })

  test('a revoked role is refused on the next check (cache invalidated in the same request)', async () => {
    const clerk = await ordersSetup()
    expect((await check({ userId: clerk, permission: 'orders:read' })).body.allowed).toBe(true)
    expect((await t.as(owner, 'DELETE', `/v1/users/${clerk}/roles/clerk`)).status).toBe(204)
    expect((await check({ userId: clerk, permission: 'orders:read' })).body.allowed).toBe(false)
  })
})
