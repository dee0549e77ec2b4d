/**
 * The in-process suite on PostgreSQL: with BULWARK_TEST_DB=postgres (and BULWARK_TEST_PG_URL naming a server),
 * `makeApp()` builds every app on a fresh database copied from a template migrated once per process
 * (`CREATE DATABASE … TEMPLATE`), and drops it on close. The engine is chosen once per process, so such a run is
 * PostgreSQL throughout; test/pg-files.txt lists the files run so, and says why the others are not.
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

/**
 * scripts/test-pg.sh names its run (BULWARK_TEST_PG_RUN): the run's databases are `bw_<run>_…` and `bw_tpl_<run>_…`,
 * and its clean-up drops those (and only those) at the end. Under it, the next database is made while a test runs
 * and a closed app's database is dropped in the background: creating and dropping were two thirds of the run.
 */
const RUN_ID = /^[a-z0-9]{1,16}$/.test(process.env.BULWARK_TEST_PG_RUN ?? '') ? process.env.BULWARK_TEST_PG_RUN : undefined
const RUN = RUN_ID ? `${RUN_ID}_` : ''
const TEST_DB = /^bw_([a-z0-9]{1,16}_)?[0-9a-f]{20}$/

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

async function createDatabase(): Promise<string> {
  const name = `bw_${RUN}${crypto.randomUUID().replaceAll('-', '').slice(0, 20)}`
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

/** Under scripts/test-pg.sh: the database the next caller gets, made in advance. */
let spare: Promise<string> | undefined

/** A new database with every migration applied; its URL. */
export async function freshPgDatabase(): Promise<string> {
  if (!RUN_ID) return await createDatabase()
  const next = spare ?? createDatabase()
  spare = createDatabase()
  spare.catch(() => {}) // a failure surfaces when it is taken
  return await next
}

export async function dropPgDatabase(url: string): Promise<void> {
  const name = parsePgUrl(url).database
  if (!TEST_DB.test(name)) throw new Error(`refusing to drop ${name}`)
  // Under scripts/test-pg.sh in the background (its clean-up drops what is left when the process ends).
  if (RUN_ID) void dropByName(name).catch(() => {})
  else await dropByName(name)
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
