/**
 * The statements around a refresh keep to their indexes when SQLite's statistics are stale: gathered (ANALYZE,
 * PRAGMA optimize at close) while the database was small, e.g. one session and one unspent refresh token on a
 * fresh install. Such statistics once made the planner scan refresh_tokens on every refresh (bench: most of a
 * refresh's CPU on a database of 13,000 tokens). The rotation itself reads and writes by primary or unique
 * key; what reads by `used_at` are the pruner's batches, through the two partial indexes.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { RETENTION_RULES } from '../../src/modules/retention/service'
import { makeApp, signUp, type TestApp } from '../helpers'

let a: TestApp
beforeAll(async () => {
  a = await makeApp()
  const u = await signUp(a)
  await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: u.refreshToken } })
  a.deps.storage.sqlite!.run('ANALYZE')
})
afterAll(() => a.close())

const planOf = (sqlText: string) =>
  a.deps.storage
    .sqlite!.query<{ detail: string }, [number, number]>(`EXPLAIN QUERY PLAN ${sqlText}`)
    .all(0, 500)
    .map((r) => r.detail)
    .join(' | ')

test('the statistics are the stale kind: two refresh tokens, one of them spent', () => {
  const stat = a.deps.storage.sqlite!.query<{ stat: string }, []>("SELECT stat FROM sqlite_stat1 WHERE tbl = 'refresh_tokens' AND idx = 'refresh_tokens_hash'").get()
  expect(stat?.stat).toStartWith('2 ')
})

for (const [name, index] of [
  ['refresh_tokens_spent', 'refresh_tokens_used'],
  ['refresh_tokens_successor_copies', 'refresh_tokens_successor_kept'],
] as const) {
  test(`the pruner's ${name} batch finds its rows through ${index}`, () => {
    const rule = RETENTION_RULES.find((r) => r.name === name)!
    const capture = { prepare: (sqlText: string) => ({ sqlText }) }
    const p = planOf((rule.prepare(capture as never) as unknown as { sqlText: string }).sqlText)
    expect(p).toMatch(new RegExp(`SEARCH refresh_tokens USING (COVERING )?INDEX ${index} \\(used_at<\\?\\)`))
  })
}
