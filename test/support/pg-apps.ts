/**
 * The in-process suite on PostgreSQL: with BULWARK_TEST_DB=postgres (and BULWARK_TEST_PG_URL naming a server),
 * `makeApp()` builds every app on a fresh database copied from a template migrated once per process
 * (`CREATE DATABASE … TEMPLATE`), and drops it on close. The engine is chosen once per process, so such a run is
 * PostgreSQL throughout; files that inspect the SQLite file itself are not part of it (.ci/run lists the files).
 */
import { SQL } from 'bun'
import { openDatabase, openStore, type Db } from '../../src/db/client'
import { openPg, parsePgUrl } from '../../src/db/pg/client'
import { migratePg } from '../../src/db/pg/migrate'

export const TEST_ON_PG = process.env.BULWARK_TEST_DB === 'postgres' && !!process.env.BULWARK_TEST_PG_URL

const admin = () => new SQL({ adapter: 'postgres', ...parsePgUrl(process.env.BULWARK_TEST_PG_URL!), max: 1 })
const urlOf = (name: string) => {
  const u = new URL(process.env.BULWARK_TEST_PG_URL!)
  u.pathname = `/${name}`
  return u.toString()
}

let template: Promise<string> | undefined

/** scripts/test-pg.sh names its run (BULWARK_TEST_PG_RUN), so its clean-up drops only that run's templates. */
const RUN = /^[a-z0-9]{1,16}$/.test(process.env.BULWARK_TEST_PG_RUN ?? '') ? `${process.env.BULWARK_TEST_PG_RUN}_` : ''

async function makeTemplate(): Promise<string> {
  const name = `bw_tpl_${RUN}${crypto.randomUUID().replaceAll('-', '').slice(0, 16)}`
  const a = admin()
  try {
    await a.unsafe(`CREATE DATABASE "${name}"`)
  } finally {
    await a.close()
  }
  const h = openPg({ url: urlOf(name), poolSize: 1 })
  try {
    await migratePg(h.sql)
  } finally {
    await h.close()
  }
  process.once('beforeExit', () => void dropByName(name))
  return name
}

async function dropByName(name: string): Promise<void> {
  const a = admin()
  try {
    await a.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  } finally {
    await a.close()
  }
}

/** A new database with every migration applied; its URL. */
export async function freshPgDatabase(): Promise<string> {
  const name = `bw_${crypto.randomUUID().replaceAll('-', '').slice(0, 20)}`
  for (let attempt = 1; ; attempt++) {
    template ??= makeTemplate()
    const tpl = await template
    const a = admin()
    try {
      await a.unsafe(`CREATE DATABASE "${name}" TEMPLATE "${tpl}"`)
      return urlOf(name)
    } catch (err) {
      // The template is gone (another run's clean-up on a shared server dropped it): make a new one, once.
      if (attempt > 1 || (err as { errno?: string }).errno !== '3D000') throw err
      if (template && (await template) === tpl) template = undefined
    } finally {
      await a.close()
    }
  }
}

export async function dropPgDatabase(url: string): Promise<void> {
  const name = parsePgUrl(url).database
  if (!/^bw_[0-9a-f]{20}$/.test(name)) throw new Error(`refusing to drop ${name}`)
  await dropByName(name)
}

/**
 * The environment for a test that builds its own deps (buildDeps, startServer): with BULWARK_TEST_DB=postgres it
 * names a fresh database (`drop()` removes it once the deps are closed); otherwise it is returned unchanged.
 */
export async function testDatabaseEnv(env: Record<string, string> = {}): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  if (!TEST_ON_PG || env.BULWARK_DATABASE_URL) return { env, drop: async () => {} }
  const url = await freshPgDatabase()
  return { env: { ...env, BULWARK_DATABASE_URL: url }, drop: () => dropPgDatabase(url) }
}

/**
 * A migrated database for service-level tests that need no app: bun:sqlite in memory or, with
 * BULWARK_TEST_DB=postgres, a fresh PostgreSQL database opened as the app opens it (src/db/client.ts `openStore`).
 */
export async function testDb(): Promise<{ db: Db; close(): Promise<void> }> {
  if (!TEST_ON_PG) {
    const h = openDatabase(':memory:')
    return { db: h.db, close: async () => h.close() }
  }
  const url = await freshPgDatabase()
  const store = await openStore({ dbPath: ':memory:', pg: { url, poolSize: 2, statementTimeoutMs: 0, tls: 'disable', caFile: undefined, allowPlaintext: true } })
  return {
    db: store.db,
    close: async () => {
      await store.close()
      await dropPgDatabase(url)
    },
  }
}
