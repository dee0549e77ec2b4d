import { withTransaction } from '../../src/db/tx'
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { eq } from 'drizzle-orm'
import { rolePermissions, roles, userRoles, users } from '../../src/db/tables'
import { AppError } from '../../src/lib/errors'
import { newId } from '../../src/lib/ids'
import { assignDefaultRole, type RbacService } from '../../src/modules/rbac/service'
import { makeApp, type TestApp } from '../helpers'
import { eventsOf, seedUser } from '../support/admin'

let t: TestApp
let rbac: RbacService

beforeEach(async () => {
  t = await makeApp()
  rbac = t.deps.rbac
})
afterEach(() => t.close())

/** Runs fn and returns the AppError it throws. */
async function thrown(fn: () => unknown): Promise<AppError> {
  try {
    await fn()
  } catch (e) {
    if (e instanceof AppError) return e
    throw e
  }
  throw new Error('expected an AppError')
}

/** Asserts a 403 and the privilege_escalation_denied event naming `rule`. */
async function expectDenied(fn: () => unknown, rule: string) {
  const before = (await eventsOf(t.deps, 'privilege_escalation_denied')).length
  const e = await thrown(fn)
  expect({ status: e.status, code: e.code }).toEqual({ status: 403, code: 'forbidden' })
  const events = await eventsOf(t.deps, 'privilege_escalation_denied')
  expect(events.length).toBe(before + 1)
  expect(events.at(-1)!.details!.rule).toBe(rule)
  expect(events.at(-1)!.outcome).toBe('failure')
}

/** A role above owner, inserted directly (no actor can create it): the only way to exercise the last-owner rule. */
async function seedRootRole() {
  const id = newId()
  await t.deps.db.insert(roles).values({ id, name: 'root', level: 200, builtin: false, createdAt: 0, updatedAt: 0 })
  await t.deps.db.insert(rolePermissions).values([{ roleId: id, permission: '*:*' }])
}

describe('effective permissions', () => {
  test('union over roles, highest level, sorted role names; no role is level 0', async () => {
    const u = await seedUser(t.deps)
    expect(await rbac.effective(u)).toEqual({ status: 'active', roles: ['user'], level: 10, permissions: ['files:read:own', 'files:write:own', 'files:delete:own'], mfaRequired: false })
    const m = await seedUser(t.deps, { roles: ['user', 'moderator'] })
    const eff = (await rbac.effective(m))!
    expect(eff.roles).toEqual(['moderator', 'user'])
    expect(eff.level).toBe(50)
    expect(eff.permissions).toEqual(['users:read', 'files:read:own', 'files:read:any', 'files:write:own', 'files:delete:own'])
    const none = await seedUser(t.deps, { roles: [] })
    expect(await rbac.effective(none)).toMatchObject({ roles: [], level: 0, permissions: [] })
    expect(await rbac.effective(newId())).toBeNull()
  })

  test('mfaRequiredFor: true when any role requires it', async () => {
    expect(await rbac.mfaRequiredFor(await seedUser(t.deps))).toBe(false)
    expect(await rbac.mfaRequiredFor(await seedUser(t.deps, { roles: ['user', 'admin'] }))).toBe(true)
  })

  test('the service role (migration 0002) holds authz:check at level 20 and is not built in', async () => {
    const s = (await rbac.listRoles()).find((r) => r.name === 'service')!
    expect(s).toMatchObject({ level: 20, builtin: false, permissions: ['authz:check'] })
    expect((await rbac.check(await seedUser(t.deps, { roles: ['service'] }), 'authz:check')).allowed).toBe(true)
  })

  test('assignDefaultRole works inside the registration transaction and rolls back with it', async () => {
    const id = newId()
    const now = t.clock.now()
    expect(
      await withTransaction(t.deps.db, async (tx) => {
        await tx.insert(users).values({ id, email: 'r@example.test', createdAt: now, updatedAt: now })
        await assignDefaultRole(tx, id, now)
        throw new Error('rollback')
      }).catch((e: Error) => e.message),
    ).toBe('rollback')
    expect(await t.deps.db.select().from(userRoles).where(eq(userRoles.userId, id))).toEqual([])
    await withTransaction(t.deps.db, async (tx) => {
      await tx.insert(users).values({ id, email: 'r@example.test', createdAt: now, updatedAt: now })
      await assignDefaultRole(tx, id, now)
    })
    expect((await rbac.effective(id))!.roles).toEqual(['user'])
  })
})

describe('check', () => {
  test('reasons name the deciding rule', async () => {
    const admin = await seedUser(t.deps, { roles: ['user', 'admin'] })
    const user = await seedUser(t.deps)
    const mod = await seedUser(t.deps, { roles: ['user', 'moderator'] })
    expect(await rbac.check(admin, 'users:delete')).toEqual({ allowed: true, reason: 'granted by role admin via users:*' })
    expect(await rbac.check(user, 'users:delete')).toEqual({ allowed: false, reason: 'no role grants users:delete' })
    expect(await rbac.check(user, 'files:read', user)).toEqual({ allowed: true, reason: 'owner match; granted by role user via files:read:own' })
    expect(await rbac.check(user, 'files:read', admin)).toEqual({ allowed: false, reason: 'not the owner and no role grants files:read:any' })
    expect(await rbac.check(user, 'files:read:own', admin)).toEqual({ allowed: false, reason: 'not the owner and no role grants files:read:any' })
    expect(await rbac.check(user, 'files:read:own', user)).toEqual({ allowed: true, reason: 'owner match; granted by role user via files:read:own' })
    expect(await rbac.check(mod, 'files:read', user)).toEqual({ allowed: true, reason: 'granted by role moderator via files:read:any' })
    expect(await rbac.check(user, 'files:read')).toEqual({ allowed: false, reason: 'no role grants files:read:any' })
    expect(await rbac.check(admin, 'files:delete', user)).toEqual({ allowed: true, reason: 'granted by role admin via files:*:any' })
    expect(await rbac.check(newId(), 'users:read')).toEqual({ allowed: false, reason: 'unknown user' })
    const off = await seedUser(t.deps, { roles: ['user', 'admin'], status: 'disabled' })
    expect(await rbac.check(off, 'users:read')).toEqual({ allowed: false, reason: 'user disabled' })
  })

  test('an unregistered permission is a 422, not a silent deny', async () => {
    const e = await thrown(async () => rbac.check(await seedUser(t.deps), 'users:fly'))
    expect({ status: e.status, code: e.code }).toEqual({ status: 422, code: 'unknown_permission' })
    expect((await thrown(async () => rbac.check(await seedUser(t.deps), 'users:*'))).code).toBe('unknown_permission')
  })
})

describe('no privilege escalation', () => {
  let admin: string
  let owner: string
  beforeEach(async () => {
    admin = await seedUser(t.deps, { roles: ['user', 'admin'] })
    owner = await seedUser(t.deps, { roles: ['user', 'owner'] })
  })

  test('roles at or above your own level cannot be created, edited, deleted, granted or revoked', async () => {
    const a = { userId: admin }
    const target = await seedUser(t.deps)
    await expectDenied(async () => await rbac.createRole(a, { name: 'peer', level: 90, permissions: [] }), 'role_level')
    expect((await rbac.createRole(a, { name: 'helper', level: 89, permissions: ['users:read'] })).level).toBe(89)
    await expectDenied(async () => await rbac.patchRole(a, 'admin', { description: 'mine now' }), 'role_level')
    await expectDenied(async () => await rbac.patchRole(a, 'helper', { level: 95 }), 'role_level')
    await expectDenied(() => rbac.grantRole(a, target, 'admin'), 'role_level')
    await expectDenied(() => rbac.grantRole(a, target, 'owner'), 'role_level')
    await rbac.assignSystem(target, 'admin')
    await expectDenied(() => rbac.revokeRole(a, target, 'admin'), 'target_level')
    // owner can: admin is below 100
    await rbac.revokeRole({ userId: owner }, target, 'admin')
    expect((await rbac.effective(target))!.roles).toEqual(['user'])
    const other = await rbac.createRole({ userId: owner }, { name: 'senior', level: 95, permissions: [] })
    expect(other.level).toBe(95)
    await expectDenied(async () => await rbac.deleteRole(a, 'senior'), 'role_level')
  })

  test('users at or above your own level cannot be acted on', async () => {
    const a = { userId: admin }
    const peer = await seedUser(t.deps, { roles: ['user', 'admin'] })
    await expectDenied(() => rbac.grantRole(a, peer, 'moderator'), 'target_level')
    await expectDenied(() => rbac.grantRole(a, owner, 'moderator'), 'target_level')
    await expectDenied(async () => await t.deps.usersAdmin.patch(a, peer, { status: 'disabled' }), 'target_level')
    await expectDenied(async () => await t.deps.usersAdmin.delete(a, owner), 'target_level')
    await expectDenied(() => t.deps.usersAdmin.unlock(a, peer), 'target_level')
    await expectDenied(async () => await t.deps.usersAdmin.endSessions(a, peer), 'target_level')
    expect((await rbac.effective(peer))!.status).toBe('active')
  })

  test('nobody changes their own roles or status', async () => {
    const a = { userId: admin }
    await expectDenied(() => rbac.grantRole(a, admin, 'moderator'), 'self')
    await expectDenied(() => rbac.revokeRole(a, admin, 'user'), 'self')
    await expectDenied(async () => await t.deps.usersAdmin.patch(a, admin, { status: 'disabled' }), 'self')
    await expectDenied(async () => await t.deps.usersAdmin.delete(a, admin), 'self')
    // renaming oneself is not an escalation
    expect((await t.deps.usersAdmin.patch(a, admin, { name: 'Ada' })).name).toBe('Ada')
  })

  test('a role cannot be given a permission the actor does not hold', async () => {
    const rm = await rbac.createRole({ userId: owner }, { name: 'rolemgr', level: 60, permissions: ['roles:read', 'roles:write', 'users:read'] })
    expect(rm.name).toBe('rolemgr')
    const mgr = await seedUser(t.deps, { roles: ['user', 'rolemgr'] })
    const m = { userId: mgr }
    await expectDenied(async () => await rbac.createRole(m, { name: 'deleter', level: 30, permissions: ['users:delete'] }), 'permission_not_held')
    await expectDenied(async () => await rbac.createRole(m, { name: 'reader', level: 30, permissions: ['users:*'] }), 'permission_not_held')
    const r = await rbac.createRole(m, { name: 'reader', level: 30, permissions: ['users:read', 'files:read:own'] })
    expect(r.permissions).toEqual(['files:read:own', 'users:read'])
    await expectDenied(async () => await rbac.patchRole(m, 'reader', { permissions: ['users:read', 'audit:read'] }), 'permission_not_held')
    // a permission the role already had (granted by someone above) may stay while others change
    await rbac.patchRole({ userId: owner }, 'reader', { permissions: ['users:read', 'audit:read'] })
    expect((await rbac.patchRole(m, 'reader', { permissions: ['audit:read'] })).permissions).toEqual(['audit:read'])
  })

  test('malformed or unmatched patterns are 422 with the failing index', async () => {
    const e = await thrown(async () => await rbac.createRole({ userId: owner }, { name: 'bad', level: 10, permissions: ['users:read', 'users:fly'] }))
    expect({ status: e.status, code: e.code }).toEqual({ status: 422, code: 'invalid_permission' })
    expect(e.extra!.errors![0]!.path).toBe('/permissions/1')
  })

  test('built-in roles: names fixed, never deleted; assigned roles need a reassign target', async () => {
    const o = { userId: owner }
    expect((await thrown(async () => await rbac.patchRole(o, 'moderator', { name: 'mod' }))).code).toBe('builtin_role')
    expect((await thrown(async () => await rbac.deleteRole(o, 'user'))).code).toBe('builtin_role')
    expect(await rbac.patchRole(o, 'moderator', { level: 55, description: 'Reads users' })).toMatchObject({ name: 'moderator', level: 55, description: 'Reads users' })
    await rbac.createRole(o, { name: 'temp', level: 40, permissions: ['users:read'] })
    const holder = await seedUser(t.deps, { roles: ['user', 'temp'] })
    expect((await thrown(async () => await rbac.deleteRole(o, 'temp'))).code).toBe('role_in_use')
    expect((await rbac.check(holder, 'users:read')).allowed).toBe(true)
    await rbac.deleteRole(o, 'temp', 'moderator')
    expect((await rbac.effective(holder))!.roles).toEqual(['moderator', 'user'])
    expect((await rbac.listRoles()).map((r) => r.name)).not.toContain('temp')
    expect((await thrown(async () => await rbac.createRole(o, { name: 'moderator', level: 10, permissions: [] }))).status).toBe(409)
  })

  test('a role granted to someone else while it is being deleted: 409 role_in_use, and nobody loses it', async () => {
    const o = { userId: owner }
    const temp = await rbac.createRole(o, { name: 'temp', level: 40, permissions: ['users:read'] })
    const first = await seedUser(t.deps, { roles: ['user', 'temp'] })
    const late = await seedUser(t.deps, { roles: ['user'] })
    const tempId = (await t.deps.db.select({ id: roles.id }).from(roles).where(eq(roles.name, temp.name)))[0]!.id
    // The grant lands after the holders were read and checked (while the reassign target is looked up).
    const target = rbac as unknown as { roleRow(name: string): Promise<unknown> }
    const roleRow = target.roleRow.bind(rbac)
    target.roleRow = async (name: string) => {
      if (name === 'moderator') await t.deps.db.insert(userRoles).values({ userId: late, roleId: tempId, grantedBy: owner, createdAt: t.clock.now() })
      return roleRow(name)
    }
    expect((await thrown(async () => await rbac.deleteRole(o, 'temp', 'moderator'))).code).toBe('role_in_use')
    target.roleRow = roleRow
    t.deps.invalidation.emit({ kind: 'user', id: late }) // what the grant's own path would have emitted
    expect((await rbac.effective(first))!.roles).toEqual(['temp', 'user'])
    expect((await rbac.effective(late))!.roles).toEqual(['temp', 'user'])
    // Tried again, both move.
    await rbac.deleteRole(o, 'temp', 'moderator')
    expect((await rbac.effective(first))!.roles).toEqual(['moderator', 'user'])
    expect((await rbac.effective(late))!.roles).toEqual(['moderator', 'user'])
  })

  test('the last active owner cannot lose the role, be disabled or be deleted', async () => {
    await seedRootRole()
    const root = { userId: await seedUser(t.deps, { roles: ['root'] }) }
    await expectDenied(() => rbac.revokeRole(root, owner, 'owner'), 'last_owner')
    await expectDenied(async () => await t.deps.usersAdmin.patch(root, owner, { status: 'disabled' }), 'last_owner')
    await expectDenied(async () => await t.deps.usersAdmin.delete(root, owner), 'last_owner')
    // a disabled second owner does not count
    const second = await seedUser(t.deps, { roles: ['owner'], status: 'disabled' })
    await expectDenied(() => rbac.revokeRole(root, owner, 'owner'), 'last_owner')
    await t.deps.usersAdmin.patch(root, second, { status: 'active' })
    await rbac.revokeRole(root, owner, 'owner')
    expect((await rbac.effective(owner))!.roles).toEqual(['user'])
    await expectDenied(async () => await t.deps.usersAdmin.delete(root, second), 'last_owner')
  })
})

describe('cache invalidation', () => {
  let owner: { userId: string }
  beforeEach(async () => {
    owner = { userId: await seedUser(t.deps, { roles: ['user', 'owner'] }) }
  })

  test('checks are served from the cache', async () => {
    const u = await seedUser(t.deps)
    await rbac.check(u, 'files:read:own')
    const before = rbac.stats()
    for (let i = 0; i < 5; i++) await rbac.check(u, 'files:read:own')
    const after = rbac.stats()
    expect(after.effective.hits - before.effective.hits).toBe(5)
    expect(after.effective.misses).toBe(before.effective.misses)
  })

  test("removing a permission from a role: the next check is refused", async () => {
    await rbac.createRole(owner, { name: 'auditor', level: 30, permissions: ['audit:read', 'users:read'] })
    const u = await seedUser(t.deps, { roles: ['user', 'auditor'] })
    expect((await rbac.check(u, 'audit:read')).allowed).toBe(true)
    await rbac.patchRole(owner, 'auditor', { permissions: ['users:read'] })
    expect(await rbac.check(u, 'audit:read')).toEqual({ allowed: false, reason: 'no role grants audit:read' })
    await rbac.patchRole(owner, 'auditor', { level: 35, mfaRequired: true })
    expect(await rbac.effective(u)).toMatchObject({ level: 35, mfaRequired: true })
  })

  test("granting and revoking a user's role, renaming a role", async () => {
    const u = await seedUser(t.deps)
    expect((await rbac.check(u, 'users:read')).allowed).toBe(false)
    await rbac.grantRole(owner, u, 'moderator')
    expect(await rbac.check(u, 'users:read')).toEqual({ allowed: true, reason: 'granted by role moderator via users:read' })
    await rbac.revokeRole(owner, u, 'moderator')
    expect((await rbac.check(u, 'users:read')).allowed).toBe(false)
    await rbac.createRole(owner, { name: 'ops', level: 30, permissions: ['sessions:revoke'] })
    await rbac.grantRole(owner, u, 'ops')
    expect((await rbac.effective(u))!.roles).toContain('ops')
    await rbac.patchRole(owner, 'ops', { name: 'operators' })
    expect((await rbac.effective(u))!.roles).toContain('operators')
  })

  test("a user's status: disabling is seen by the next check", async () => {
    const u = await seedUser(t.deps, { roles: ['user', 'moderator'] })
    expect((await rbac.check(u, 'users:read')).allowed).toBe(true)
    await t.deps.usersAdmin.patch(owner, u, { status: 'disabled' })
    expect(await rbac.check(u, 'users:read')).toEqual({ allowed: false, reason: 'user disabled' })
    await t.deps.usersAdmin.delete(owner, u)
    expect(await rbac.check(u, 'users:read')).toEqual({ allowed: false, reason: 'unknown user' })
  })

  test('changes made outside the services are picked up after the TTL', async () => {
    const u = await seedUser(t.deps)
    expect((await rbac.effective(u))!.level).toBe(10)
    await t.deps.db.delete(userRoles).where(eq(userRoles.userId, u))
    expect((await rbac.effective(u))!.level).toBe(10)
    t.clock.advance(t.deps.config.cache.ttlMs + 1)
    expect((await rbac.effective(u))!.level).toBe(0)
  })
})
