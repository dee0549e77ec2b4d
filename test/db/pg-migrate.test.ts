import { afterAll, describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/db/client'
import { openPg } from '../../src/db/pg/client'
import { migratePg, PG_MIGRATIONS } from '../../src/db/pg/migrate'
import { SchemaTooNewError } from '../../src/db/migrate'
import { createTestDatabase, dropTestDatabase, PG_SKIP, PG_URL } from './pg-helpers'

const made: string[] = []
afterAll(async () => {
  for (const u of made) await dropTestDatabase(u)
}, 30_000)
const fresh = async () => {
  const u = await createTestDatabase()
  made.push(u)
  return u
}

describe.skipIf(!PG_URL)(`PostgreSQL migrations${PG_SKIP}`, () => {
  test('a fresh database gets every migration, the built-in roles and the service role', async () => {
    const h = openPg({ url: await fresh() })
    const r = await migratePg(h.sql)
    expect(r.applied.length).toBe(PG_MIGRATIONS.length)
    const roles = await h.sql`SELECT name, level, builtin, mfa_required FROM roles ORDER BY level`
    expect(roles).toEqual([
      { name: 'user', level: 10, builtin: true, mfa_required: false },
      { name: 'service', level: 20, builtin: false, mfa_required: false },
      { name: 'moderator', level: 50, builtin: true, mfa_required: false },
      { name: 'admin', level: 90, builtin: true, mfa_required: true },
      { name: 'owner', level: 100, builtin: true, mfa_required: true },
    ])
    const [perm] = await h.sql`SELECT count(*)::int AS n FROM role_permissions`
    // The seed data migrations have PostgreSQL equivalents: the same roles and grants as a fresh SQLite database.
    const lite = openDatabase(':memory:')
    const litePerms = lite.sqlite.query<{ role_id: string; permission: string }, []>('SELECT role_id, permission FROM role_permissions ORDER BY role_id, permission').all()
    const liteRoles = lite.sqlite.query<Record<string, unknown>, []>('SELECT id, name, level, description, builtin, mfa_required, created_at, updated_at FROM roles ORDER BY id').all()
    await lite.close()
    expect(perm.n).toBe(litePerms.length)
    expect([...(await h.sql`SELECT role_id, permission FROM role_permissions ORDER BY role_id COLLATE "C", permission COLLATE "C"`)]).toEqual(litePerms)
    const pgRoles = [...(await h.sql`SELECT id, name, level, description, builtin, mfa_required, created_at, updated_at FROM roles ORDER BY id`)].map((r) => ({ ...r, builtin: r.builtin ? 1 : 0, mfa_required: r.mfa_required ? 1 : 0, created_at: Number(r.created_at), updated_at: Number(r.updated_at) }))
    expect(pgRoles).toEqual(liteRoles)
    expect((await migratePg(h.sql)).applied).toEqual([])
    await h.close()
  })

  test('two migrators started together on a fresh database both succeed and apply each migration once', async () => {
    const url = await fresh()
    const a = openPg({ url })
    const b = openPg({ url })
    const [ra, rb] = await Promise.all([migratePg(a.sql), migratePg(b.sql)])
    expect([ra.applied.length, rb.applied.length].sort()).toEqual([0, PG_MIGRATIONS.length])
    expect(ra.current).toBe(PG_MIGRATIONS.length)
    expect(rb.current).toBe(PG_MIGRATIONS.length)
    const [rows] = await a.sql`SELECT count(*)::int AS n, count(DISTINCT hash)::int AS d FROM drizzle.__drizzle_migrations`
    expect(rows).toEqual({ n: PG_MIGRATIONS.length, d: PG_MIGRATIONS.length })
    const [roles] = await a.sql`SELECT count(*)::int AS n FROM roles`
    expect(roles.n).toBe(5)
    await Promise.all([a.close(), b.close()])
  })

  test('a database migrated by a newer binary is refused', async () => {
    const h = openPg({ url: await fresh() })
    await migratePg(h.sql)
    await h.sql`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('from-the-future', ${Date.UTC(2099, 0, 1)})`
    await expect(migratePg(h.sql)).rejects.toThrow(SchemaTooNewError)
    await h.close()
  })

  test('a failing migration leaves nothing half-applied', async () => {
    const h = openPg({ url: await fresh() })
    const broken = [...PG_MIGRATIONS, { tag: '9999_broken', when: Date.UTC(2098, 0, 1), hash: 'x', sql: ['CREATE TABLE t_ok (a int)', 'THIS IS NOT SQL'] }]
    await expect(migratePg(h.sql, broken)).rejects.toThrow()
    const rows = await h.sql`SELECT tablename FROM pg_tables WHERE tablename IN ('t_ok', 'users')`
    expect(rows).toEqual([])
    await h.close()
  })

  test('the statement timeout is applied to every connection', async () => {
    const h = openPg({ url: await fresh(), statementTimeoutMs: 150, poolSize: 2 })
    const [t] = await h.sql`SHOW statement_timeout`
    expect(t.statement_timeout).toBe('150ms')
    await expect(h.sql`SELECT pg_sleep(2)`).rejects.toThrow(/statement timeout/)
    await h.close()
  })
})
