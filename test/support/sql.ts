/**
 * Raw SQL in tests, on the app's database of either engine (most tests use the drizzle handle, `await deps.db…`,
 * whose values are the same on both; these are for statements it cannot express).
 * On SQLite they run synchronously on the connection, exactly as the tests did before; on PostgreSQL through the
 * pool, with the SQLite text's `?` placeholders numbered (`$1`, `$2`…) unless a PostgreSQL text is given.
 */
import type { AppDeps } from '../../src/app'
import { TEST_ON_PG } from './pg-apps'

/** True when this test process runs its apps on PostgreSQL (BULWARK_TEST_DB=postgres): for `test.skipIf(onPg)`. */
export const onPg = TEST_ON_PG

type Deps = Pick<AppDeps, 'storage'>

const numbered = (q: string) => {
  let i = 0
  return q.replace(/\?/g, () => `$${++i}`)
}

/** Runs a statement; the number of rows it changed. */
export async function sqlExec(deps: Deps, sqlite: string, params: unknown[] = [], pg?: string): Promise<number> {
  const s = deps.storage
  if (s.engine === 'postgres') return Number((await s.pg!.unsafe(pg ?? numbered(sqlite), params as never[])).count ?? 0)
  return s.sqlite!.run(sqlite, params as never[]).changes
}

/** Runs statements in one transaction: `[sqlite, params?, pg?]` each, as for `sqlExec`. */
export async function sqlTx(deps: Deps, statements: [sqlite: string, params?: unknown[], pg?: string][]): Promise<void> {
  const s = deps.storage
  if (s.engine === 'postgres') {
    await s.pg!.begin(async (tx) => {
      for (const [q, params = [], pg] of statements) await tx.unsafe(pg ?? numbered(q), params as never[])
    })
    return
  }
  s.sqlite!.transaction(() => {
    for (const [q, params = []] of statements) s.sqlite!.run(q, params as never[])
  })()
}

/** The rows of a query. PostgreSQL returns int8 (times, `count(*)`) as strings: cast in the query (`::int`) or compare with Number(). */
export async function sqlRows<T = Record<string, unknown>>(deps: Deps, sqlite: string, params: unknown[] = [], pg?: string): Promise<T[]> {
  const s = deps.storage
  if (s.engine === 'postgres') return [...(await s.pg!.unsafe(pg ?? numbered(sqlite), params as never[]))] as T[]
  return s.sqlite!.query(sqlite).all(...(params as never[])) as T[]
}

/** The single number a `SELECT count(*) AS n …` (or any one-value query naming its column `n`) answers. */
export async function sqlCount(deps: Deps, sqlite: string, params: unknown[] = [], pg?: string): Promise<number> {
  return Number((await sqlRows<{ n: number | string }>(deps, sqlite, params, pg))[0]!.n)
}

/** Rows in each table of the app's database (SQLite: every table; PostgreSQL: those of the `public` schema), by name. */
export async function tableCounts(deps: Deps): Promise<Record<string, number>> {
  const names =
    deps.storage.engine === 'postgres'
      ? (await sqlRows<{ name: string }>(deps, '', [], "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name")).map((r) => r.name)
      : (await sqlRows<{ name: string }>(deps, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")).map((r) => r.name)
  const out: Record<string, number> = {}
  for (const name of names) out[name] = await sqlCount(deps, `SELECT count(*) AS n FROM "${name}"`)
  return out
}
