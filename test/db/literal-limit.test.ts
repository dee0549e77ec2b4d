// SQLite: a numeric `.limit(n)` is written into the statement, not bound (src/db/tx.ts). A bound LIMIT makes
// SQLite (3.47+) compile the prepared statement again on every execution; the effect is measured by
// bench/refresh-work.ts (README, Performance, Round 5), and this file checks the SQL that reaches SQLite.
import { expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { eq, sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/bun-sqlite'
import { drizzle as drizzlePg } from 'drizzle-orm/bun-sql'
import { users } from '../../src/db/schema'
import { users as pgUsers } from '../../src/db/pg/schema'
import { literalLimit } from '../../src/db/tx'

const sqlite = new Database(':memory:')
sqlite.run('CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT)')
for (let i = 0; i < 5; i++) sqlite.run('INSERT INTO users (id, email) VALUES (?, ?)', [`u${i}`, `u${i}@example.com`])
const db = drizzle({ client: sqlite })
const q = db.select({ id: users.id }).from(users)

test('.limit(1) is a literal in the SQL, and the lookup still answers', async () => {
  const one = q.where(eq(users.id, 'u1')).limit(1)
  expect(one.toSQL().sql).toEndWith(' limit 1')
  expect(one.toSQL().params).toEqual(['u1'])
  expect(await one).toEqual([{ id: 'u1' }])
})

test('other numeric limits stay parameters (each literal would be a statement text of its own); literalLimit writes one', async () => {
  const three = db.select({ id: users.id }).from(users).orderBy(users.id).limit(3)
  expect(three.toSQL().sql).toEndWith(' limit ?')
  expect(three.toSQL().params).toEqual([3])
  const lit = db.select({ id: users.id }).from(users).orderBy(users.id).limit(literalLimit(3))
  expect(lit.toSQL().sql).toEndWith(' limit 3')
  expect(lit.toSQL().params).toEqual([])
  expect((await lit).map((r) => r.id)).toEqual(['u0', 'u1', 'u2'])
  expect(await db.select({ id: users.id }).from(users).limit(literalLimit(0))).toEqual([])
  for (const bad of [1.5, -1, Number.MAX_SAFE_INTEGER + 2, Number.NaN]) expect(() => literalLimit(bad)).toThrow(RangeError)
})

test('a prepared statement with a literal limit answers each execution with its own parameters', () => {
  const p = db.select({ id: users.id }).from(users).where(eq(users.id, sql.placeholder('id'))).limit(1).prepare()
  expect(p.all({ id: 'u2' })).toEqual([{ id: 'u2' }])
  expect(p.all({ id: 'u4' })).toEqual([{ id: 'u4' }])
})

test('placeholders, non-integers and negative limits keep drizzle\'s own form', () => {
  const placeholder = db.select({ id: users.id }).from(users).limit(sql.placeholder('n')).toSQL()
  expect(placeholder.sql).toEndWith(' limit ?')
  for (const odd of [1.5, Number.MAX_SAFE_INTEGER + 2]) {
    const t = db.select({ id: users.id }).from(users).limit(odd).toSQL()
    expect(t.sql).toEndWith(' limit ?')
    expect(t.params).toEqual([odd])
  }
  // drizzle leaves a negative limit out altogether.
  expect(db.select({ id: users.id }).from(users).limit(-1).toSQL().sql).not.toContain('limit')
})

test('PostgreSQL queries are built by their own dialect: the limit stays a parameter', () => {
  const pg = drizzlePg.mock()
  const t = pg.select({ id: pgUsers.id }).from(pgUsers).limit(1).toSQL()
  expect(t.sql).toEndWith(' limit $1')
  expect(t.params).toEqual([1])
})
