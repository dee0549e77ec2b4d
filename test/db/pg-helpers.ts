/**
 * PostgreSQL for tests: BULWARK_TEST_PG_URL names a server (.ci/run sets it when one answers on
 * 127.0.0.1:5432). Each test file makes its own `bw_<random>` databases and drops them, so runs never collide.
 */
import { SQL } from 'bun'
import { parsePgUrl } from '../../src/db/pg/client'

export const PG_URL = process.env.BULWARK_TEST_PG_URL
/** Suffix for test names when no server is named: a skipped test says why. */
export const PG_SKIP = PG_URL ? '' : ' (skipped: BULWARK_TEST_PG_URL is not set)'

function admin(): SQL {
  const u = parsePgUrl(PG_URL!)
  return new SQL({ adapter: 'postgres', ...u, max: 1 })
}

/** Creates an empty database and returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const name = `bw_${crypto.randomUUID().replaceAll('-', '').slice(0, 20)}`
  const a = admin()
  try {
    await a.unsafe(`CREATE DATABASE "${name}"`)
  } finally {
    await a.close()
  }
  const u = new URL(PG_URL!)
  u.pathname = `/${name}`
  return u.toString()
}

export async function dropTestDatabase(url: string): Promise<void> {
  const name = parsePgUrl(url).database
  if (!/^bw_[0-9a-f]{20}$/.test(name)) throw new Error(`refusing to drop ${name}`)
  const a = admin()
  try {
    await a.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  } finally {
    await a.close()
  }
}
