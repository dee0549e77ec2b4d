/**
 * The users list's view cache (src/modules/users/admin-service.ts `views`): an entry is used only while the row's
 * `updated_at` is the one it was rendered from (src/modules/users/row-version.ts makes every write to a listed column
 * change it), is dropped by the user's and every role's events, never outlives the role ids or the roles it shows,
 * and a page read while any user's or role's event arrives is not kept.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { makeApp, signUp, STRONG_PASSWORD, tokenFromMail, type TestApp } from '../helpers'
import { seedUser } from '../support/admin'
import { onPg, sqlExec, sqlRows } from '../support/sql'

let a: TestApp | undefined
afterEach(async () => {
  await a?.close()
  a = undefined
})

const list = async (app: TestApp) => (await app.deps.usersAdmin.list({ limit: 100 } as never)).items
const entry = async (app: TestApp, id: string) => (await list(app)).find((i) => i.id === id)
const views = (app: TestApp) => app.deps.usersAdmin.viewStats()

describe('users list view cache', () => {
  test('a rendered entry is served from the cache while its row is unchanged', async () => {
    a = await makeApp()
    for (let i = 0; i < 5; i++) await seedUser(a.deps)
    const first = await list(a)
    expect(first.length).toBe(5)
    expect(views(a)).toMatchObject({ hits: 0, size: 5 })
    expect(await list(a)).toEqual(first)
    expect(views(a)).toMatchObject({ hits: 5, size: 5 })
  })

  test('a change written without any event (another instance, no Redis) shows at once: the row version is checked', async () => {
    a = await makeApp()
    const u = await seedUser(a.deps, { name: 'Before' })
    expect((await entry(a, u))?.name).toBe('Before')
    // What another instance's write does to the row: the new value and the next version, no event here.
    await sqlExec(a.deps, 'UPDATE users SET name = ?, status = ?, updated_at = updated_at + 1 WHERE id = ?', ['After', 'disabled', u])
    expect(await entry(a, u)).toMatchObject({ name: 'After', status: 'disabled' })
  })

  test('two changes in the same millisecond, with a list read between them, both show (the version still moves)', async () => {
    a = await makeApp() // FakeClock: it does not move unless told
    const u = await seedUser(a.deps, { name: 'One' })
    await a.deps.auth.updateName(u, 'Two')
    expect((await entry(a, u))?.name).toBe('Two')
    await a.deps.auth.updateName(u, 'Three')
    expect((await entry(a, u))?.name).toBe('Three')
    // The same through the admin service.
    const owner = await seedUser(a.deps, { roles: ['owner'] })
    await a.deps.usersAdmin.patch({ userId: owner } as never, u, { name: 'Four' })
    expect((await entry(a, u))?.name).toBe('Four')
    await a.deps.usersAdmin.patch({ userId: owner } as never, u, { status: 'disabled' })
    expect((await entry(a, u))?.status).toBe('disabled')
    await a.deps.auth.updateName(u, 'Five')
    expect((await entry(a, u))?.name).toBe('Five')
  })

  test('every write to a listed column, and a password change, moves updated_at within one millisecond: name, email verification, password, admin change', async () => {
    a = await makeApp() // the FakeClock stands still throughout
    const { email, user, accessToken } = await signUp(a)
    const owner = await seedUser(a.deps, { roles: ['owner'] })
    const version = async () => Number((await sqlRows<{ v: number }>(a!.deps, 'SELECT updated_at AS v FROM users WHERE id = ?', [user.id]))[0]!.v)
    const seen = [await version()]
    const moved = async () => {
      const v = await version()
      expect(v).toBeGreaterThan(seen.at(-1)!)
      seen.push(v)
    }
    expect((await a.req('PATCH', '/v1/me', { token: accessToken, body: { name: 'Named' } })).status).toBe(200)
    await moved()
    expect((await entry(a, user.id))?.emailVerified).toBe(false)
    expect((await a.req('POST', '/v1/auth/email/verify', { body: { token: await tokenFromMail(a, email, /verify/i) } })).status).toBe(204)
    await moved()
    // No event: the list sees the verification through the version alone.
    expect((await entry(a, user.id))?.emailVerified).toBe(true)
    expect((await a.req('POST', '/v1/me/password', { token: accessToken, body: { currentPassword: STRONG_PASSWORD, password: `${STRONG_PASSWORD} again` } })).status).toBe(204)
    await moved()
    await a.deps.usersAdmin.patch({ userId: owner } as never, user.id, { name: 'By admin' })
    await moved()
    expect(seen.at(-1)! - seen[0]!).toBe(4) // one past the last, four times, on a clock that did not move
  })

  test('an entry at an older version than its row counts as a miss, the others as hits', async () => {
    a = await makeApp()
    const u = await seedUser(a.deps)
    for (let i = 0; i < 3; i++) await seedUser(a.deps)
    await list(a)
    const before = views(a)
    await sqlExec(a.deps, 'UPDATE users SET updated_at = updated_at + 1 WHERE id = ?', [u])
    await list(a)
    expect(views(a)).toMatchObject({ hits: before.hits + 3, misses: before.misses + 1, size: 4 })
  })

  test('a permissions event drops every entry', async () => {
    a = await makeApp()
    await seedUser(a.deps)
    await list(a)
    expect(views(a).size).toBe(1)
    a.deps.invalidation.emit({ kind: 'permissions', id: '*' })
    expect(views(a).size).toBe(0)
  })

  test("a grant is heard of through the user's event, a role change through the role's", async () => {
    a = await makeApp()
    const u = await seedUser(a.deps)
    expect((await entry(a, u))?.roles).toEqual(['user'])
    await a.deps.rbac.assignSystem(u, 'moderator')
    expect((await entry(a, u))?.roles).toEqual(['moderator', 'user'])
    // A role renamed behind the service's back shows once the role's event arrives (it drops every entry).
    const roleId = (await a.deps.rbac.roleId('moderator'))!
    await sqlExec(a.deps, 'UPDATE roles SET name = ? WHERE id = ?', ['mods', roleId])
    expect((await entry(a, u))?.roles).toEqual(['moderator', 'user'])
    a.deps.invalidation.emit({ kind: 'role', id: roleId })
    expect((await entry(a, u))?.roles).toEqual(['mods', 'user'])
    // The relay's resync after missed events drops them too.
    await sqlExec(a.deps, 'UPDATE roles SET name = ? WHERE id = ?', ['moderators', roleId])
    await a.deps.rbac.clearCaches()
    a.deps.usersAdmin.clearViews()
    expect((await entry(a, u))?.roles).toEqual(['moderators', 'user'])
  })

  test('an entry lives no longer than the role ids it shows, even when it was rendered after them', async () => {
    a = await makeApp()
    const ttl = a.deps.config.cache.ttlMs
    const u = await seedUser(a.deps)
    // The role ids are read and kept at t0 (as any list view does) …
    expect((await a.deps.rbac.roleNamesOf([u])).get(u)).toEqual(['user'])
    a.clock.advance(ttl / 2)
    // … the entry is rendered at t0 + ttl/2 from them …
    expect((await entry(a, u))?.roles).toEqual(['user'])
    // … a grant lands without any event; at t0 + ttl + 1 both the role ids and the entry have expired.
    await sqlExec(a.deps, 'INSERT INTO user_roles (user_id, role_id, created_at) SELECT ?, id, 0 FROM roles WHERE name = ?', [u, 'admin'])
    a.clock.advance(ttl / 2 - 1)
    expect((await entry(a, u))?.roles).toEqual(['user'])
    a.clock.advance(2)
    expect((await entry(a, u))?.roles).toEqual(['admin', 'user'])
  })

  test('an entry lives no longer than the roles it shows may be shown unread, even when their holders were read later', async () => {
    a = await makeApp()
    const ttl = a.deps.config.cache.ttlMs
    const u = await seedUser(a.deps, { roles: ['moderator'] })
    const roleId = (await a.deps.rbac.roleId('moderator'))!
    // The role is read and kept at t0 (through another holder) …
    const other = await seedUser(a.deps, { roles: ['moderator'] })
    expect((await a.deps.rbac.roleNamesOf([other])).get(other)).toEqual(['moderator'])
    a.clock.advance(ttl / 2)
    // … u's role ids are read at t0 + ttl/2 and the entry rendered then …
    expect((await entry(a, u))?.roles).toEqual(['moderator'])
    // … the role is renamed without any event; at t0 + ttl + 1 the role entry has expired and so has u's.
    await sqlExec(a.deps, 'UPDATE roles SET name = ? WHERE id = ?', ['mods', roleId])
    a.clock.advance(ttl / 2 - 1)
    expect((await entry(a, u))?.roles).toEqual(['moderator'])
    a.clock.advance(2)
    expect((await entry(a, u))?.roles).toEqual(['mods'])
  })

  test("an entry of a user without roles lives no longer than that user's kept role ids", async () => {
    a = await makeApp()
    const ttl = a.deps.config.cache.ttlMs
    const u = await seedUser(a.deps, { roles: [] })
    expect((await a.deps.rbac.roleNamesOf([u])).get(u)).toBeUndefined() // no role ids, kept at t0
    a.clock.advance(ttl / 2)
    expect((await entry(a, u))?.roles).toEqual([]) // rendered at t0 + ttl/2 from them
    await sqlExec(a.deps, 'INSERT INTO user_roles (user_id, role_id, created_at) SELECT ?, id, 0 FROM roles WHERE name = ?', [u, 'admin'])
    a.clock.advance(ttl / 2 - 1)
    expect((await entry(a, u))?.roles).toEqual([])
    a.clock.advance(2)
    expect((await entry(a, u))?.roles).toEqual(['admin'])
  })

  test.skipIf(onPg)('a row changed between the page\'s two reads is rendered from the second (SQLite only: the change is written from a synchronous hook between them)', async () => {
    a = await makeApp()
    const u = await seedUser(a.deps, { name: 'Old' })
    const v = await seedUser(a.deps)
    await list(a) // both kept
    a.deps.invalidation.emit({ kind: 'user', id: v }) // v's entry gone: the page is read twice
    const ua = a.deps.usersAdmin as unknown as { fullPage(limit: number): unknown }
    const fullPage = ua.fullPage.bind(a.deps.usersAdmin)
    ua.fullPage = (limit: number) => {
      a!.deps.storage.sqlite!.run('UPDATE users SET name = ?, updated_at = updated_at + 1 WHERE id = ?', ['New', u])
      return fullPage(limit)
    }
    expect((await entry(a, u))?.name).toBe('New') // not u's kept entry, whose version the first read matched
    ua.fullPage = fullPage
  })

  test.each([
    ['a change to one of its users', 'user'],
    ["any role's change", 'role'],
  ] as const)('a page read while the event of %s arrives is not kept', async (_what, kind) => {
    a = await makeApp()
    const u = await seedUser(a.deps)
    const rbac = a.deps.rbac as unknown as { listedRoles(ids: string[]): Promise<unknown> }
    const original = rbac.listedRoles.bind(a.deps.rbac)
    // The event arrives between the page's read of the rows and its rendering.
    rbac.listedRoles = async (ids: string[]) => {
      a!.deps.invalidation.emit({ kind, id: kind === 'user' ? u : 'any' })
      return await original(ids)
    }
    expect((await entry(a, u))?.roles).toEqual(['user'])
    rbac.listedRoles = original
    expect(views(a).size).toBe(0)
    expect((await entry(a, u))?.roles).toEqual(['user'])
    expect(views(a).size).toBe(1)
  })

  test('pages keep their order and cursor when part of a page is cached', async () => {
    a = await makeApp()
    const ids: string[] = []
    for (let i = 0; i < 7; i++) ids.push(await seedUser(a.deps))
    ids.sort()
    await list(a) // every entry cached …
    for (const id of [ids[1]!, ids[3]!, ids[4]!]) a.deps.invalidation.emit({ kind: 'user', id }) // … but three
    const seen: string[] = []
    let cursor: string | undefined
    do {
      const page = await a.deps.usersAdmin.list({ limit: 3, cursor } as never)
      seen.push(...page.items.map((i) => i.id))
      cursor = page.nextCursor ?? undefined
    } while (cursor)
    expect(seen).toEqual(ids)
    // Every entry is kept again: the next full page is answered from the cache alone.
    const before = views(a)
    expect(before.size).toBe(7)
    expect((await list(a)).map((i) => i.id)).toEqual(ids)
    expect(views(a)).toMatchObject({ hits: before.hits + 7, misses: before.misses })
  })
})
