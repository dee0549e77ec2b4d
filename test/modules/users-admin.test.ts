import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { asc, eq } from 'drizzle-orm'
import { lockouts, refreshTokens, securityEvents, sessions, users } from '../../src/db/tables'
import { AppError } from '../../src/lib/errors'
import { listQuery, type UserStatus } from '../../src/modules/users/admin-service'
import { makeApp, type TestApp } from '../helpers'
import { eventsOf, seedSession, seedUser } from '../support/admin'
import { onPg } from '../support/sql'

let t: TestApp
let owner: { userId: string }

beforeEach(async () => {
  t = await makeApp()
  owner = { userId: await seedUser(t.deps, { email: 'owner@example.test', name: 'Owner', roles: ['user', 'owner'] }) }
})
afterEach(() => t.close())

const ids = (items: { id: string }[]) => items.map((i) => i.id)

async function thrown(fn: () => unknown): Promise<AppError> {
  try {
    await fn()
  } catch (e) {
    if (e instanceof AppError) return e
    throw e
  }
  throw new Error('expected an AppError')
}

describe('list', () => {
  test('pages in id order with no duplicates or gaps while rows are inserted between pages', async () => {
    const admin = t.deps.usersAdmin
    const initial = [owner.userId]
    for (let i = 0; i < 24; i++) initial.push(await seedUser(t.deps))
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = await admin.list({ limit: 7, cursor })
      seen.push(...ids(page.items))
      cursor = page.nextCursor ?? undefined
      pages++
      // inserted between pages: must neither shift nor repeat what was already paged
      await seedUser(t.deps)
      if (pages > 20) throw new Error('pagination does not end')
    } while (cursor)
    expect(new Set(seen).size).toBe(seen.length)
    for (const id of initial) expect(seen).toContain(id)
    expect(seen).toEqual([...seen].sort())
  })

  test('limit defaults to 20 and the last page has no cursor', async () => {
    for (let i = 0; i < 21; i++) await seedUser(t.deps)
    const first = await t.deps.usersAdmin.list({})
    expect(first.items.length).toBe(20)
    expect(first.nextCursor).toBeString()
    const second = await t.deps.usersAdmin.list({ cursor: first.nextCursor! })
    expect(second.items.length).toBe(2)
    expect(second.nextCursor).toBeNull()
  })

  test('the unfiltered page (its own prepared statement) shows each user as GET /v1/users/:id does', async () => {
    await seedUser(t.deps, { email: 'shown@example.test', name: 'Shown', roles: ['user', 'moderator'], verified: true })
    await seedUser(t.deps, { email: 'plain@example.test', name: null, status: 'disabled', roles: [] })
    const page = await t.deps.usersAdmin.list({})
    expect(page.items.length).toBe(3)
    for (const item of page.items) expect(item).toEqual(await t.deps.usersAdmin.get(item.id))
    expect(page.items.find((u) => u.email === 'shown@example.test')).toMatchObject({ name: 'Shown', status: 'active', emailVerified: true, roles: ['moderator', 'user'] })
    expect(page.items.find((u) => u.email === 'plain@example.test')).toMatchObject({ name: null, status: 'disabled', emailVerified: false, roles: [] })
  })

  test('a tampered cursor, a foreign one or one from another filter is 400 invalid_cursor', async () => {
    for (let i = 0; i < 3; i++) await seedUser(t.deps)
    const { nextCursor } = await t.deps.usersAdmin.list({ limit: 1 })
    const c = nextCursor!
    const [payload, mac] = c.split('.')
    const forged = `${Buffer.from(JSON.stringify(['ffffffff-ffff-7fff-bfff-ffffffffffff', 'x'])).toString('base64url')}.${mac}`
    for (const bad of [`${payload}x.${mac}`, `${payload}.${mac!.replace(/^./, (ch) => (ch === 'A' ? 'B' : 'A'))}`, forged, 'garbage', '.']) {
      const e = await thrown(() => t.deps.usersAdmin.list({ cursor: bad }))
      expect({ status: e.status, code: e.code }).toEqual({ status: 400, code: 'invalid_cursor' })
    }
    expect((await thrown(() => t.deps.usersAdmin.list({ cursor: c, status: 'active' }))).code).toBe('invalid_cursor')
    expect((await t.deps.usersAdmin.list({ cursor: c, limit: 1 })).items.length).toBe(1)
  })

  test('filters: q is a case-insensitive prefix of email or name; role; status; combined', async () => {
    const ada = await seedUser(t.deps, { email: 'ada@example.test', name: 'Lovelace' })
    const alan = await seedUser(t.deps, { email: 'alan@example.test', name: 'Turing', roles: ['user', 'moderator'] })
    const grace = await seedUser(t.deps, { email: 'grace@example.test', name: 'Hopper', status: 'disabled' })
    const adam = await seedUser(t.deps, { email: 'zz@example.test', name: 'Adams', roles: [] })
    const list = async (f: { q?: string; role?: string; status?: UserStatus }) => ids((await t.deps.usersAdmin.list(f)).items).sort()
    expect(await list({ q: 'AD' })).toEqual([ada, adam].sort())
    expect(await list({ q: 'ala' })).toEqual([alan])
    expect(await list({ q: 'hop' })).toEqual([grace])
    expect(await list({ q: 'example' })).toEqual([])
    expect(await list({ q: 'a%' })).toEqual([])
    expect(await list({ role: 'moderator' })).toEqual([alan])
    expect(await list({ role: 'user' })).toEqual([owner.userId, ada, alan, grace].sort())
    expect(await list({ role: 'nonexistent' })).toEqual([])
    expect(await list({ status: 'disabled' })).toEqual([grace])
    expect(await list({ q: 'a', status: 'active' })).toEqual([ada, alan, adam].sort())
    expect(await list({ q: 'a', role: 'moderator' })).toEqual([alan])
    expect(await list({ role: 'user', status: 'disabled' })).toEqual([grace])
    const view = (await t.deps.usersAdmin.list({ q: 'alan' })).items[0]!
    expect(view).toEqual({ id: alan, email: 'alan@example.test', name: 'Turing', status: 'active', emailVerified: false, roles: ['moderator', 'user'], createdAt: new Date(t.clock.now()).toISOString() })
  })

  test('filtered pages continue through the cursor', async () => {
    const mods: string[] = []
    for (let i = 0; i < 5; i++) mods.push(await seedUser(t.deps, { roles: ['user', 'moderator'] }))
    for (let i = 0; i < 5; i++) await seedUser(t.deps)
    const p1 = await t.deps.usersAdmin.list({ role: 'moderator', limit: 3 })
    const p2 = await t.deps.usersAdmin.list({ role: 'moderator', limit: 3, cursor: p1.nextCursor! })
    expect([...ids(p1.items), ...ids(p2.items)]).toEqual(mods)
    expect(p2.nextCursor).toBeNull()
  })
})

// SQLite's planner; PostgreSQL's is cost-based and picks plans by table statistics.
describe('query plans', () => {
  const plan = (q: { toSQL(): { sql: string; params: unknown[] } }) => {
    const { sql, params } = q.toSQL()
    return t.deps.storage.sqlite!
      .query(`EXPLAIN QUERY PLAN ${sql}`)
      .all(...(params as never[]))
      .map((r) => (r as { detail: string }).detail)
      .join(' | ')
  }
  const combos: { q?: string; roleId?: string; status?: UserStatus }[] = [
    {},
    { status: 'active' },
    { q: 'ad' },
    { q: 'ad', status: 'active' },
    { q: 'ad', roleId: 'r' },
    { roleId: 'r' },
    { roleId: 'r', status: 'disabled' },
    { q: 'ad', roleId: 'r', status: 'active' },
  ]
  test.skipIf(onPg).each(combos)('list %o never scans users (SQLite only: EXPLAIN QUERY PLAN)', (f) => {
    for (const after of ['', '0190']) {
      const p = plan(listQuery(t.deps.db, f, after, 21))
      expect(p).not.toContain('SCAN users')
      expect(p).toContain('users')
    }
  })
  test.skipIf(onPg)('q is driven by the email and lower(name) indexes (SQLite only: EXPLAIN QUERY PLAN)', () => {
    const p = plan(listQuery(t.deps.db, { q: 'ad', status: 'active' }, '', 21))
    expect(p).toContain('users_email_unique')
    expect(p).toContain('users_name_lower')
  })
  test.skipIf(onPg)('lookups by id never scan users (SQLite only: EXPLAIN QUERY PLAN)', () => {
    const p = plan(t.deps.db.select().from(users).where(eq(users.id, 'x')))
    expect(p).toContain('SEARCH users')
  })
})

describe('changes', () => {
  test('disabling ends every session and expires unspent refresh tokens; enabling does not revive them', async () => {
    const u = await seedUser(t.deps)
    const s1 = await seedSession(t.deps, u)
    const s2 = await seedSession(t.deps, u)
    const other = await seedSession(t.deps, owner.userId)
    const seen: string[] = []
    t.deps.invalidation.on((e) => seen.push(`${e.kind}:${e.id}`))
    const v = await t.deps.usersAdmin.patch(owner, u, { status: 'disabled' })
    expect(v.status).toBe('disabled')
    for (const s of [s1, s2]) {
      const row = (await t.deps.db.select().from(sessions).where(eq(sessions.id, s.sessionId)))[0]!
      expect(row.revokedAt).toBe(t.clock.now())
      expect(row.revokedReason).toBe('user_disabled')
      expect((await t.deps.db.select().from(refreshTokens).where(eq(refreshTokens.id, s.tokenId)))[0]!.expiresAt).toBe(t.clock.now())
    }
    expect((await t.deps.db.select().from(sessions).where(eq(sessions.id, other.sessionId)))[0]!.revokedAt).toBeNull()
    expect(seen.sort()).toEqual([`session:${s1.sessionId}`, `session:${s2.sessionId}`, `user:${u}`].sort())
    expect((await eventsOf(t.deps, 'user_disabled')).at(-1)).toMatchObject({ actorId: owner.userId, targetId: u, details: { sessionsEnded: 2 } })
    t.clock.advance(1000)
    await t.deps.usersAdmin.patch(owner, u, { status: 'active', name: 'Back' })
    expect((await t.deps.db.select().from(sessions).where(eq(sessions.id, s1.sessionId)))[0]!.revokedAt).not.toBeNull()
    expect((await eventsOf(t.deps, 'user_enabled')).length).toBe(1)
    expect((await t.deps.usersAdmin.get(u)).name).toBe('Back')
  })

  test('ending all sessions', async () => {
    const u = await seedUser(t.deps)
    await seedSession(t.deps, u)
    await seedSession(t.deps, u)
    expect(await t.deps.usersAdmin.endSessions(owner, u)).toBe(2)
    expect(await t.deps.usersAdmin.endSessions(owner, u)).toBe(0)
    // oneself is allowed, like logout-all
    await seedSession(t.deps, owner.userId)
    expect(await t.deps.usersAdmin.endSessions(owner, owner.userId)).toBe(1)
  })

  test('unlock clears both lock kinds and records account_unlocked', async () => {
    const u = await seedUser(t.deps)
    const now = t.clock.now()
    await t.deps.db.insert(lockouts).values([{ userId: u, kind: 'password', failures: 5, windowStartedAt: now, lockedUntil: now + 60_000, updatedAt: now }, { userId: u, kind: 'mfa', failures: 3, windowStartedAt: now, updatedAt: now }])
    await t.deps.usersAdmin.unlock(owner, u)
    expect(await t.deps.db.select().from(lockouts).where(eq(lockouts.userId, u))).toEqual([])
    expect((await eventsOf(t.deps, 'account_unlocked')).at(-1)).toMatchObject({ actorId: owner.userId, targetId: u })
  })

  test('delete removes the user and their data but keeps their security events', async () => {
    const u = await seedUser(t.deps)
    await seedSession(t.deps, u)
    await t.deps.audit.record({ type: 'login_succeeded', outcome: 'success', actorId: u, targetId: u })
    await t.deps.usersAdmin.delete(owner, u)
    expect((await thrown(() => t.deps.usersAdmin.get(u))).status).toBe(404)
    expect(await t.deps.db.select().from(sessions).where(eq(sessions.userId, u))).toEqual([])
    expect((await t.deps.db.select().from(securityEvents).where(eq(securityEvents.targetId, u)).orderBy(asc(securityEvents.id))).map((e) => e.type)).toEqual(['login_succeeded', 'user_deleted'])
    expect((await thrown(async () => await t.deps.usersAdmin.delete(owner, u))).status).toBe(404)
  })
})
