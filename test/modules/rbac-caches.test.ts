/**
 * The RBAC service's caches (src/modules/rbac/service.ts): a user's roles read while a change to that user
 * lands are not kept (userEpoch), and the role ids a list view shows (heldCache) come from the cache, are
 * dropped by every change heard of, and otherwise live the cache TTL.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { userRoles } from '../../src/db/tables'
import { makeApp, type TestApp } from '../helpers'
import { seedUser } from '../support/admin'
import { sqlExec } from '../support/sql'

/** The change, written at once (inside a synchronous hook): SQLite here; on PostgreSQL through a fresh client. */
function sqlExecSync(app: TestApp, sqlite: string, params: unknown[]): void {
  const s = app.deps.storage
  if (s.engine === 'postgres') pendingPg.push(sqlExec(app.deps, sqlite, params))
  else s.sqlite!.run(sqlite, params as never[])
}
const pendingPg: Promise<unknown>[] = []

let a: TestApp | undefined
afterEach(async () => {
  await a?.close()
  a = undefined
})

describe('RBAC caches', () => {
  test('a grant that lands while a user is read from the database is not hidden by that older read', async () => {
    a = await makeApp()
    const rbac = a.deps.rbac
    const u = await seedUser(a.deps)
    // Hold the read of the user between its queries and the cache write.
    const target = rbac as unknown as { loadUser(id: string): Promise<unknown> }
    const load = target.loadUser.bind(rbac)
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let loaded!: () => void
    const read = new Promise<void>((r) => (loaded = r))
    target.loadUser = async (id: string) => {
      const entry = await load(id)
      loaded()
      await gate
      return entry
    }
    const reading = rbac.effective(u)
    await read // the read is done, its result not yet kept
    await rbac.assignSystem(u, 'admin') // emits the user's invalidation while the read waits
    release()
    expect((await reading)?.roles).toEqual(['user']) // what that read saw
    target.loadUser = load
    expect((await rbac.effective(u))?.roles).toEqual(['admin', 'user'])
  })

  test('a role read while a change to that role lands is not kept: the next check sees the change', async () => {
    a = await makeApp()
    const rbac = a.deps.rbac
    const u = await seedUser(a.deps, { roles: ['moderator'] })
    const roleId = (await rbac.roleId('moderator'))!
    // The change lands (committed, its event heard) after the role's rows were read, before the entry is kept:
    // the registry's expansion of the read patterns runs in between.
    const registry = rbac.registry as unknown as { expand(p: string): unknown }
    const expand = registry.expand.bind(rbac.registry)
    let landed = false
    registry.expand = (p: string) => {
      if (!landed) {
        landed = true
        sqlExecSync(a!, 'DELETE FROM role_permissions WHERE role_id = ?', [roleId])
        a!.deps.invalidation.emit({ kind: 'role', id: roleId })
      }
      return expand(p)
    }
    const first = await rbac.effective(u)
    registry.expand = expand
    expect(landed).toBe(true)
    expect(first?.permissions.length).toBeGreaterThan(0) // what that read saw
    await Promise.all(pendingPg)
    expect((await rbac.effective(u))?.permissions).toEqual([])
  })

  test("a list view's role ids read while a change to one of the users lands are not kept", async () => {
    a = await makeApp()
    const rbac = a.deps.rbac
    const u = await seedUser(a.deps)
    const target = rbac as unknown as { readHeld(ids: string[]): Promise<unknown> }
    const readHeld = target.readHeld.bind(rbac)
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let done!: () => void
    const read = new Promise<void>((r) => (done = r))
    target.readHeld = async (ids: string[]) => {
      const rows = await readHeld(ids)
      done()
      await gate
      return rows
    }
    const listing = rbac.roleNamesOf([u])
    await read
    await rbac.assignSystem(u, 'admin')
    release()
    expect((await listing).get(u)).toEqual(['user']) // what that read saw
    target.readHeld = readHeld
    expect((await rbac.roleNamesOf([u])).get(u)).toEqual(['admin', 'user'])
  })

  test("a list view's role names are kept, dropped by a change heard of, and otherwise read again after the TTL", async () => {
    a = await makeApp()
    const rbac = a.deps.rbac
    const u = await seedUser(a.deps)
    const v = await seedUser(a.deps, { roles: [] })
    expect(await rbac.roleNamesOf([u, v])).toEqual(new Map([[u, ['user']]]))
    // Through the service: heard of at once.
    await rbac.assignSystem(v, 'moderator')
    expect((await rbac.roleNamesOf([u, v])).get(v)).toEqual(['moderator'])
    // Behind its back (another instance without Redis): the kept ids stand until the TTL…
    await a.deps.db.delete(userRoles)
    expect(await rbac.roleNamesOf([u, v])).toEqual(new Map([[u, ['user']], [v, ['moderator']]]))
    a.clock.advance(a.deps.config.cache.ttlMs + 1)
    expect(await rbac.roleNamesOf([u, v])).toEqual(new Map())
    // …or until the invalidation relay brings the user's event.
    await sqlExec(a.deps, 'INSERT INTO user_roles (user_id, role_id, created_at) SELECT ?, id, 0 FROM roles WHERE name = ?', [u, 'admin'])
    expect((await rbac.roleNamesOf([u])).get(u)).toBeUndefined()
    a.deps.invalidation.emit({ kind: 'user', id: u })
    expect((await rbac.roleNamesOf([u])).get(u)).toEqual(['admin'])
    // The admin list shows the same.
    const owner = await seedUser(a.deps, { roles: ['user', 'owner'] })
    const page = await a.deps.usersAdmin.list({ limit: 100 } as never)
    expect(page.items.find((i) => i.id === u)?.roles).toEqual(['admin'])
    expect(page.items.find((i) => i.id === owner)?.roles).toEqual(['owner', 'user'])
  })
})
