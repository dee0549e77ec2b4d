/**
 * The statements of a refresh keep to their indexes when SQLite's statistics are stale: gathered (ANALYZE,
 * PRAGMA optimize at close) while the database was small, e.g. one session and one unspent refresh token on a
 * fresh install, they say that any `replaced_by` value covers the whole table. The planner then scanned
 * refresh_tokens on every refresh (bench: most of a refresh's CPU on a database of 13,000 tokens).
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { clearSuccessorCopy } from '../../src/modules/sessions/service'
import { makeApp, signUp, type TestApp } from '../helpers'

let a: TestApp
beforeAll(async () => {
  a = await makeApp()
  await signUp(a)
  a.deps.storage.sqlite!.run('ANALYZE')
})
afterAll(() => a.close())

const plan = (q: { toSQL(): { sql: string; params: unknown[] } }) => {
  const { sql, params } = q.toSQL()
  return a.deps.storage
    .sqlite!.query(`EXPLAIN QUERY PLAN ${sql}`)
    .all(...(params as never[]))
    .map((r) => (r as { detail: string }).detail)
    .join(' | ')
}

test('the statistics are the stale kind: one refresh token, no replaced_by value', () => {
  const stat = a.deps.storage.sqlite!.query<{ stat: string }, []>("SELECT stat FROM sqlite_stat1 WHERE idx = 'refresh_tokens_replaced_by'").get()
  expect(stat?.stat).toBe('1 1')
})

test("clearing the parent's copy of the successor searches refresh_tokens_replaced_by, never scans the table", () => {
  const p = plan(clearSuccessorCopy(a.deps.db, 'some-token-id'))
  expect(p).toContain('USING INDEX refresh_tokens_replaced_by')
  expect(p).not.toContain('SCAN refresh_tokens')
})
