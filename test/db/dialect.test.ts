import { expect, test } from 'bun:test'
import { sql } from 'drizzle-orm'
import { openDatabase } from '../../src/db/client'
import { sqliteDialect } from '../../src/db/dialect'

test('the SQLite dialect recognises a unique violation by table and column from the real error, and counts changed rows', async () => {
  const h = openDatabase(':memory:', { migrate: false })
  try {
    h.db.run(sql`CREATE TABLE u (email TEXT UNIQUE, name TEXT UNIQUE)`)
    expect(sqliteDialect.changes(h.db.run(sql`INSERT INTO u (email, name) VALUES ('a', 'x'), ('b', 'y')`))).toBe(2)
    let err: unknown
    try {
      h.db.run(sql`INSERT INTO u (email, name) VALUES ('a', 'z')`)
    } catch (e) {
      err = e
    }
    expect(sqliteDialect.isUniqueViolation(err, 'u', 'email')).toBe(true)
    expect(sqliteDialect.isUniqueViolation(err, 'u', 'name')).toBe(false)
    expect(sqliteDialect.isUniqueViolation(new Error('other'), 'u', 'email')).toBe(false)
    expect(sqliteDialect.isUniqueViolation(new Error('wrapped', { cause: err }), 'u', 'email')).toBe(true)
    expect(sqliteDialect.changes(h.db.run(sql`UPDATE u SET name = 'q' WHERE email = 'none'`))).toBe(0)
  } finally {
    await h.close()
  }
})
