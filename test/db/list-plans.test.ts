/**
 * Every paged list query is driven by an index on BOTH engines (the cases and their data:
 * test/support/list-plan-cases.ts). SQLite: EXPLAIN QUERY PLAN in this process, on a migrated in-memory
 * database. PostgreSQL: EXPLAIN (FORMAT JSON) in a child process (the engine is chosen once per process;
 * test/support/pg-list-plans.ts), both the plan for the query's parameters and the generic plan a prepared
 * statement switches to after five executions (Bun's SQL client prepares every parameterised statement).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { openDatabase, type DbHandle } from '../../src/db/client'
import { PLAN_CASES, seedSql, type PlanCase } from '../support/list-plan-cases'
import { createTestDatabase, dropTestDatabase, PG_SKIP, PG_URL } from './pg-helpers'

/** An index named in `uses` (`a|b`: either) is in the plan text. */
const usesAll = (c: PlanCase, engine: 'sqlite' | 'postgres', indexes: string[]) => c.uses[engine].filter((u) => !u.split('|').some((n) => indexes.includes(n)))

describe('list queries on SQLite (EXPLAIN QUERY PLAN)', () => {
  let h: DbHandle
  beforeAll(() => {
    h = openDatabase(':memory:')
    for (const s of seedSql('sqlite')) h.sqlite.run(s)
  })
  afterAll(() => h.close())

  const plan = (c: PlanCase) => {
    const { sql, params } = c.build(h.db).toSQL()
    return h.sqlite.query<{ id: number; parent: number; detail: string }, never[]>(`EXPLAIN QUERY PLAN ${sql}`).all(...(params as never[]))
  }

  test.each(PLAN_CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const rows = plan(c)
    const text = rows.map((r) => r.detail).join(' | ')
    const indexes = [...text.matchAll(/USING (?:COVERING )?INDEX (\w+)/g)].map((m) => m[1]!)
    expect(usesAll(c, 'sqlite', indexes), text).toEqual([])
    // A whole-table scan without an index (SCAN t alone; an integer primary key walk is `SCAN t` too, so
    // only for tables whose list is not in rowid order).
    if (c.table !== 'security_events') expect(rows.filter((r) => r.detail === `SCAN ${c.table}`), text).toEqual([])
    const sorts = rows.filter((r) => /USE TEMP B-TREE FOR (ORDER BY|RIGHT PART OF ORDER BY)/.test(r.detail))
    if (c.order === 'index') expect(sorts, text).toEqual([])
    // Bounded: only the outer query sorts (the LIMITed branches are index-ordered).
    if (c.order === 'bounded') expect(sorts.filter((r) => r.parent !== 0), text).toEqual([])
  })
})

interface PgNode {
  'Node Type': string
  'Index Name'?: string
  'Relation Name'?: string
  'Parent Relationship'?: string
  Plans?: PgNode[]
}

const nodes = (n: PgNode): PgNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)]
const isScan = (n: PgNode) => n['Relation Name'] !== undefined
/**
 * Rows reach `n` from some scan without passing a Limit. The inner side of a nested loop runs once per row of
 * the outer side (a lookup by its key), so only the outer side decides.
 */
const unlimited = (n: PgNode): boolean => {
  if (n['Node Type'] === 'Limit') return false
  if (isScan(n)) return true
  const children = n.Plans ?? []
  return (n['Node Type'] === 'Nested Loop' ? children.filter((c) => c['Parent Relationship'] === 'Outer') : children).some(unlimited)
}
const describePlan = (n: PgNode, depth = 0): string =>
  [`${'  '.repeat(depth)}${n['Node Type']}${n['Index Name'] ? ` using ${n['Index Name']}` : ''}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}`, ...(n.Plans ?? []).map((c) => describePlan(c, depth + 1))].join('\n')

function checkPg(c: PlanCase, root: PgNode) {
  const all = nodes(root)
  const text = describePlan(root)
  expect(usesAll(c, 'postgres', all.map((n) => n['Index Name']).filter((x): x is string => !!x)), text).toEqual([])
  expect(all.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === c.table).map((n) => n['Node Type']), text).toEqual([])
  const sorts = all.filter((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort')
  if (c.order === 'index') expect(sorts.map((n) => n['Node Type']), text).toEqual([])
  if (c.order === 'bounded') expect(sorts.filter((s) => (s.Plans ?? []).some(unlimited)).map((n) => n['Node Type']), text).toEqual([])
}

describe.skipIf(!PG_URL)(`list queries on PostgreSQL (EXPLAIN (FORMAT JSON))${PG_SKIP}`, () => {
  let url: string
  let plans: Record<string, { custom: [{ Plan: PgNode }]; generic: [{ Plan: PgNode }] }> = {}
  beforeAll(async () => {
    url = await createTestDatabase()
    const p = Bun.spawn([process.execPath, join(import.meta.dir, '..', 'support', 'pg-list-plans.ts'), url], { stdout: 'pipe', stderr: 'pipe', env: { ...process.env, BULWARK_TEST_DB: '' } })
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
    if (code !== 0) throw new Error(`pg-list-plans exited ${code}: ${err}`)
    plans = JSON.parse(out)
  }, 60_000)
  afterAll(async () => {
    if (url) await dropTestDatabase(url)
  }, 30_000)

  test('every case has a plan', () => {
    expect(Object.keys(plans).sort()).toEqual(PLAN_CASES.map((c) => c.name).sort())
  })
  test.each(PLAN_CASES.map((c) => [c.name, c] as const))('%s (plan for its parameters)', (name, c) => {
    checkPg(c, plans[name]!.custom[0].Plan)
  })
  test.each(PLAN_CASES.filter((c) => !c.genericPlanWalks).map((c) => [c.name, c] as const))('%s (generic plan of the prepared statement)', (name, c) => {
    checkPg(c, plans[name]!.generic[0].Plan)
  })
  for (const c of PLAN_CASES.filter((c) => c.genericPlanWalks)) {
    test.skip(`${c.name} (generic plan of the prepared statement; skipped: ${c.genericPlanWalks})`, () => {})
  }
})
