/**
 * The user list's prefix search on a PostgreSQL database whose default collation is linguistic: ICU with
 * punctuation ignored (`und-u-ka-shifted`), which orders like glibc's en_US.UTF-8 does. The search reads
 * `[q, q + U+10FFFF)` ranges, exactly the strings starting with q only in a binary order; the email and name
 * columns are `COLLATE "C"` on PostgreSQL (src/db/pg/schema.ts), as SQLite's BINARY. Without it, q=ab listed
 * a-bc@… and "A-B Jones".
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { SQL } from 'bun'
import { join } from 'node:path'
import { parsePgUrl } from '../../src/db/pg/client'
import { dropTestDatabase, PG_SKIP, PG_URL } from './pg-helpers'

const made: string[] = []
afterAll(async () => {
  for (const u of made) await dropTestDatabase(u)
}, 30_000)

async function linguisticDatabase(): Promise<string> {
  const name = `bw_${crypto.randomUUID().replaceAll('-', '').slice(0, 20)}`
  const a = new SQL({ adapter: 'postgres', ...parsePgUrl(PG_URL!), max: 1 })
  try {
    await a.unsafe(`CREATE DATABASE "${name}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und-u-ka-shifted' LOCALE 'C.UTF-8'`)
  } finally {
    await a.close()
  }
  const u = new URL(PG_URL!)
  u.pathname = `/${name}`
  made.push(u.toString())
  return u.toString()
}

async function search(url: string, q: string): Promise<string[]> {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, '..', 'support', 'pg-user-search.ts'), url, q], { stdout: 'pipe', stderr: 'pipe', env: { ...process.env, BULWARK_TEST_DB: '' } })
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
  if (code !== 0) throw new Error(`pg-user-search exited ${code}: ${err}`)
  return JSON.parse(out)
}

describe.skipIf(!PG_URL)(`PostgreSQL user search under a linguistic database collation${PG_SKIP}`, () => {
  test('q=ab lists exactly the emails and names that start with "ab" (case-folded), as on SQLite', async () => {
    const url = await linguisticDatabase()
    // The database really orders linguistically: 'a-bc' sorts inside the 'ab' range under its default collation.
    const a = new SQL({ adapter: 'postgres', ...parsePgUrl(url), max: 1 })
    try {
      expect((await a.unsafe(`SELECT 'a-bc' >= 'ab' AND 'a-bc' < 'ab' || U&'\\+10FFFF' AS inside`))[0].inside).toBe(true)
    } finally {
      await a.close()
    }
    expect(await search(url, 'ab')).toEqual(['ab@example.com', 'abc@example.com', 'zed@example.com'])
    expect(await search(url, 'a-b')).toEqual(['a-bc@example.com', 'yan@example.com'])
  }, 60_000)
})
