/**
 * The PostgreSQL side of test/db/list-plans.test.ts, run as its own process (`bun test/support/pg-list-plans.ts
 * URL`): the engine is chosen once per process (src/db/tables.ts) and the test process is SQLite's. Migrates
 * the (empty) database at URL, seeds it (list-plan-cases.ts), and prints one JSON object: for each case, the
 * plan PostgreSQL picks for the query with its parameters (`custom`) and the plan a long-lived prepared
 * statement ends up with (`generic`, plan_cache_mode = force_generic_plan), both EXPLAIN (FORMAT JSON).
 */
import { useEngine } from '../../src/db/tables'
import { openPg } from '../../src/db/pg/client'
import { migratePg } from '../../src/db/pg/migrate'
import type { Db } from '../../src/db/client'
import { PLAN_CASES, seedSql } from './list-plan-cases'

useEngine('postgres')
const h = openPg({ url: process.argv[2]!, poolSize: 1 })
const literal = (v: unknown) => (typeof v === 'number' ? String(v) : v === null ? 'NULL' : `'${String(v).replaceAll("'", "''")}'`)
try {
  await migratePg(h.sql)
  for (const s of seedSql('postgres')) await h.sql.unsafe(s)
  const out: Record<string, { custom: unknown; generic: unknown }> = {}
  for (const c of PLAN_CASES) {
    const { sql, params } = c.build(h.db as unknown as Db).toSQL()
    const custom = (await h.sql.unsafe(`EXPLAIN (FORMAT JSON) ${sql}`, params as never[]))[0]['QUERY PLAN']
    await h.sql.unsafe(`PREPARE list_plan AS ${sql}`)
    await h.sql.unsafe('SET plan_cache_mode = force_generic_plan')
    const generic = (await h.sql.unsafe(`EXPLAIN (FORMAT JSON) EXECUTE list_plan${params.length ? `(${params.map(literal).join(', ')})` : ''}`))[0]['QUERY PLAN']
    await h.sql.unsafe('RESET plan_cache_mode')
    await h.sql.unsafe('DEALLOCATE list_plan')
    out[c.name] = { custom, generic }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
} finally {
  await h.close()
}
