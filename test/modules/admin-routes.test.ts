/** The Administration routes end to end through app.handle, signed in with real sessions and access tokens. */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { eq } from 'drizzle-orm'
import { users } from '../../src/db/tables'
import { ALL_PERMISSIONS, PERMISSIONS } from '../../src/lib/permissions'
import { expectProblem } from '../helpers'
import { makeAdminApp, seedSession, seedUser } from '../support/admin'

let t: Awaited<ReturnType<typeof makeAdminApp>>
let owner: string
let target: string

beforeEach(async () => {
  t = await makeAdminApp()
  owner = await seedUser(t.deps, { roles: ['user', 'owner'] })
  target = await seedUser(t.deps, { email: 'target@example.test', name: 'Target' })
  await seedSession(t.deps, target)
})
afterEach(() => t.close())

/** A user holding exactly `permission` (through a level-80 role) besides `user`. */
async function holderOf(permission: string): Promise<string> {
  const name = `p-${permission.replaceAll(':', '-')}`
  await t.deps.rbac.createRole({ userId: owner }, { name, level: 80, permissions: [permission] })
  return seedUser(t.deps, { roles: ['user', name] })
}

interface RouteCase {
  method: string
  label: string
  path: () => string
  permission: string
  body?: () => unknown
  status: number
}

const routes: RouteCase[] = [
  { method: 'GET', label: '/v1/users', path: () => '/v1/users', permission: 'users:read', status: 200 },
  { method: 'GET', label: '/v1/users/:id', path: () => `/v1/users/${target}`, permission: 'users:read', status: 200 },
  { method: 'PATCH', label: '/v1/users/:id', path: () => `/v1/users/${target}`, permission: 'users:write', body: () => ({ name: 'Renamed' }), status: 200 },
  { method: 'POST', label: '/v1/users/:id/unlock', path: () => `/v1/users/${target}/unlock`, permission: 'users:write', status: 204 },
  { method: 'DELETE', label: '/v1/users/:id', path: () => `/v1/users/${target}`, permission: 'users:delete', status: 204 },
  { method: 'PUT', label: '/v1/users/:id/roles/moderator', path: () => `/v1/users/${target}/roles/moderator`, permission: 'roles:assign', status: 204 },
  { method: 'DELETE', label: '/v1/users/:id/roles/user', path: () => `/v1/users/${target}/roles/user`, permission: 'roles:assign', status: 204 },
  { method: 'DELETE', label: '/v1/users/:id/sessions', path: () => `/v1/users/${target}/sessions`, permission: 'sessions:revoke', status: 204 },
  { method: 'GET', label: '/v1/roles', path: () => '/v1/roles', permission: 'roles:read', status: 200 },
  { method: 'POST', label: '/v1/roles', path: () => '/v1/roles', permission: 'roles:write', body: () => ({ name: 'newrole', level: 5, permissions: [] }), status: 201 },
  { method: 'PATCH', label: '/v1/roles/service', path: () => '/v1/roles/service', permission: 'roles:write', body: () => ({ description: 'Machines' }), status: 200 },
  { method: 'DELETE', label: '/v1/roles/service', path: () => '/v1/roles/service', permission: 'roles:write', status: 204 },
  { method: 'GET', label: '/v1/permissions', path: () => '/v1/permissions', permission: 'roles:read', status: 200 },
  { method: 'POST', label: '/v1/authz/check', path: () => '/v1/authz/check', permission: 'authz:check', body: () => ({ userId: target, permission: 'users:read' }), status: 200 },
]

describe.each(routes)('$method $label', (r) => {
  test(`401 anonymous, 403 without ${r.permission}, ${r.status} with it`, async () => {
    expectProblem(await t.as(undefined, r.method, r.path(), { body: r.body?.() }), 401)
    const plain = await seedUser(t.deps)
    const denied = expectProblem(await t.as(plain, r.method, r.path(), { body: r.body?.() }), 403, 'forbidden')
    expect(denied.detail).toContain(r.permission)
    const res = await t.as(await holderOf(r.permission), r.method, r.path(), { body: r.body?.() })
    expect({ status: res.status, body: res.status >= 400 ? res.body : undefined }).toEqual({ status: r.status, body: undefined })
    expect(res.headers.get('x-request-id')).toBeString()
    if (r.status === 204) expect(res.text).toBe('')
  })
})

describe('users routes', () => {
  test('list: items, nextCursor, pagination through HTTP, no password hash ever', async () => {
    await t.deps.db.update(users).set({ passwordHash: '$argon2id$v=19$secret-hash' }).where(eq(users.id, target))
    for (let i = 0; i < 3; i++) await seedUser(t.deps)
    const p1 = await t.as(owner, 'GET', '/v1/users?limit=2')
    expect(p1.status).toBe(200)
    expect(p1.body.items.length).toBe(2)
    const p2 = await t.as(owner, 'GET', `/v1/users?limit=2&cursor=${encodeURIComponent(p1.body.nextCursor)}`)
    const p3 = await t.as(owner, 'GET', `/v1/users?limit=2&cursor=${encodeURIComponent(p2.body.nextCursor)}`)
    expect(p3.body.nextCursor).toBeNull()
    const all = [...p1.body.items, ...p2.body.items, ...p3.body.items]
    expect(all.length).toBe(5)
    expect(Object.keys(all.find((u: { id: string }) => u.id === target)).sort()).toEqual(['createdAt', 'email', 'emailVerified', 'id', 'name', 'roles', 'status'])
    for (const r of [p1, p2, p3]) expect(r.text).not.toContain('argon2')
    const one = await t.as(owner, 'GET', `/v1/users/${target}`)
    expect(one.body).toMatchObject({ id: target, email: 'target@example.test', name: 'Target', roles: ['user'], status: 'active', emailVerified: false })
    expect(one.text).not.toContain('argon2')
  })

  test('filters through the query string', async () => {
    await seedUser(t.deps, { email: 'mod@example.test', roles: ['user', 'moderator'], status: 'disabled' })
    const r = await t.as(owner, 'GET', '/v1/users?q=MOD&role=moderator&status=disabled')
    expect(r.body.items.map((u: { email: string }) => u.email)).toEqual(['mod@example.test'])
  })

  test('bad cursors are 400 invalid_cursor; bad query, params and bodies are 422', async () => {
    expectProblem(await t.as(owner, 'GET', '/v1/users?cursor=abc.def'), 400, 'invalid_cursor')
    for (const q of ['limit=0', 'limit=101', 'limit=abc', 'status=gone', 'extra=1', `q=${'a'.repeat(300)}`]) {
      expectProblem(await t.as(owner, 'GET', `/v1/users?${q}`), 422, 'validation_failed')
    }
    expectProblem(await t.as(owner, 'PATCH', `/v1/users/${target}`, { body: { name: 'x', role: 'owner' } }), 422, 'validation_failed')
    expectProblem(await t.as(owner, 'PATCH', `/v1/users/${target}`, { body: {} }), 422, 'validation_failed')
    expectProblem(await t.as(owner, 'PATCH', `/v1/users/${target}`, { body: { status: 'banned' } }), 422, 'validation_failed')
    expectProblem(await t.as(owner, 'GET', '/v1/users/01900000-0000-7000-8000-000000000000'), 404, 'not_found')
    expectProblem(await t.as(owner, 'PUT', `/v1/users/${target}/roles/nope`), 404, 'not_found')
  })

  test('disabling through HTTP ends the target’s access at once (auth cache invalidated)', async () => {
    const mod = await seedUser(t.deps, { roles: ['user', 'moderator'] })
    expect((await t.as(mod, 'GET', '/v1/users')).status).toBe(200)
    expect((await t.as(owner, 'PATCH', `/v1/users/${mod}`, { body: { status: 'disabled' } })).body.status).toBe('disabled')
    expectProblem(await t.as(mod, 'GET', '/v1/users'), 401)
  })

  test('escalation through HTTP: an admin cannot grant owner, touch another admin or change themselves', async () => {
    const admin = await seedUser(t.deps, { roles: ['user', 'admin'] })
    const peer = await seedUser(t.deps, { roles: ['user', 'admin'] })
    expectProblem(await t.as(admin, 'PUT', `/v1/users/${target}/roles/owner`), 403, 'forbidden')
    expectProblem(await t.as(admin, 'PATCH', `/v1/users/${peer}`, { body: { status: 'disabled' } }), 403, 'forbidden')
    expectProblem(await t.as(admin, 'DELETE', `/v1/users/${admin}/roles/admin`), 403, 'forbidden')
    expectProblem(await t.as(admin, 'POST', '/v1/roles', { body: { name: 'superadmin', level: 95, permissions: [] } }), 403, 'forbidden')
    expect((await t.as(admin, 'PUT', `/v1/users/${target}/roles/moderator`)).status).toBe(204)
    expect((await t.deps.rbac.effective(target))!.roles).toEqual(['moderator', 'user'])
  })
})

describe('roles routes', () => {
  test('GET /v1/permissions lists the registry with descriptions, built-ins marked', async () => {
    const r = await t.as(owner, 'GET', '/v1/permissions')
    expect(r.body.items.map((p: { name: string }) => p.name)).toEqual(ALL_PERMISSIONS)
    expect(r.body.items[0]).toEqual({ name: 'users:read', description: PERMISSIONS['users:read'], builtin: true })
    expect(r.body.nextCursor).toBeNull()
  })

  test('create, change, delete a role', async () => {
    const c = await t.as(owner, 'POST', '/v1/roles', { body: { name: 'support', level: 40, permissions: ['users:read', 'sessions:revoke'], description: 'Helpdesk', mfaRequired: true } })
    expect(c.status).toBe(201)
    expect(c.body).toMatchObject({ name: 'support', level: 40, permissions: ['sessions:revoke', 'users:read'], description: 'Helpdesk', mfaRequired: true, builtin: false })
    expectProblem(await t.as(owner, 'POST', '/v1/roles', { body: { name: 'support', level: 40, permissions: [] } }), 409, 'conflict')
    expectProblem(await t.as(owner, 'POST', '/v1/roles', { body: { name: 'x2', level: 40, permissions: ['users:fly'] } }), 422, 'invalid_permission')
    expectProblem(await t.as(owner, 'POST', '/v1/roles', { body: { name: 'Bad Name', level: 40, permissions: [] } }), 422, 'validation_failed')
    expectProblem(await t.as(owner, 'POST', '/v1/roles', { body: { name: 'big', level: 1001, permissions: [] } }), 422, 'validation_failed')
    const p = await t.as(owner, 'PATCH', '/v1/roles/support', { body: { name: 'helpdesk', permissions: ['users:read'] } })
    expect(p.body).toMatchObject({ name: 'helpdesk', permissions: ['users:read'] })
    expectProblem(await t.as(owner, 'PATCH', '/v1/roles/user', { body: { name: 'member' } }), 409, 'builtin_role')
    expectProblem(await t.as(owner, 'DELETE', '/v1/roles/admin'), 409, 'builtin_role')
    await seedUser(t.deps, { roles: ['helpdesk'] })
    expectProblem(await t.as(owner, 'DELETE', '/v1/roles/helpdesk'), 409, 'role_in_use')
    expect((await t.as(owner, 'DELETE', '/v1/roles/helpdesk?reassign=user')).status).toBe(204)
    expectProblem(await t.as(owner, 'DELETE', '/v1/roles/helpdesk'), 404, 'not_found')
  })

  test('authz check: decision, reason, ownership and an immediate refusal after a revoke', async () => {
    const svc = await seedUser(t.deps, { roles: ['service'] })
    const mod = await seedUser(t.deps, { roles: ['user', 'moderator'] })
    const check = (body: unknown) => t.as(svc, 'POST', '/v1/authz/check', { body })
    expect((await check({ userId: mod, permission: 'users:read' })).body).toEqual({ allowed: true, reason: 'granted by role moderator via users:read' })
    expect((await check({ userId: target, permission: 'files:read', resourceOwnerId: target })).body).toEqual({ allowed: true, reason: 'owner match; granted by role user via files:read:own' })
    expect((await check({ userId: target, permission: 'files:read', resourceOwnerId: mod })).body.allowed).toBe(false)
    expectProblem(await check({ userId: mod, permission: 'users:fly' }), 422, 'unknown_permission')
    expect((await t.as(owner, 'PATCH', '/v1/roles/moderator', { body: { permissions: ['files:read:any'] } })).status).toBe(200)
    expect((await check({ userId: mod, permission: 'users:read' })).body).toEqual({ allowed: false, reason: 'no role grants users:read' })
  })
})
