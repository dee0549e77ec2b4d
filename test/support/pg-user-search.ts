/**
 * The PostgreSQL side of test/db/pg-collation.test.ts, run as its own process (`bun test/support/pg-user-search.ts
 * URL Q`): the engine is chosen once per process and the test process is SQLite's. Migrates the (empty) database
 * at URL, inserts users, runs the user list's query (src/modules/users/admin-service.ts listQuery) for `q=Q`, and
 * prints the emails it lists as one JSON array.
 */
import { useEngine } from '../../src/db/tables'
import { openPg } from '../../src/db/pg/client'
import { migratePg } from '../../src/db/pg/migrate'
import * as pg from '../../src/db/pg/schema'
import type { Db } from '../../src/db/client'
import { listQuery } from '../../src/modules/users/admin-service'

useEngine('postgres')
const h = openPg({ url: process.argv[2]!, poolSize: 1 })
try {
  await migratePg(h.sql)
  const people: [string, string | null][] = [
    ['ab@example.com', null],
    ['a-bc@example.com', null],
    ['abc@example.com', null],
    ['a.b@example.com', null],
    ['zed@example.com', 'Ab Smith'],
    ['yan@example.com', 'A-B Jones'],
    ['xi@example.com', 'Élise Ab'],
  ]
  await h.db.insert(pg.users).values(people.map(([email, name], i) => ({ id: `u${i}`, email, name, createdAt: 1, updatedAt: 1 }))).onConflictDoNothing() // a second search on the same database
  const rows = await listQuery(h.db as unknown as Db, { q: process.argv[3]! }, '', 50)
  process.stdout.write(`${JSON.stringify(rows.map((r) => r.email).sort())}\n`)
} finally {
  await h.close()
}
