import { afterAll, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { SQL } from 'bun'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parsePgUrl } from '../../src/db/pg/client'
import { createTestDatabase, dropTestDatabase, PG_SKIP, PG_URL } from '../db/pg-helpers'
import { call, OWNER_EMAIL, OWNER_PASSWORD, runBinary, signIn, startBinary } from './harness'

const SECRET = 'db-copy-test-secret-0123456789-abcdefghijklmnop'
const made: string[] = []
const dirs: string[] = []
afterAll(async () => {
  for (const u of made) await dropTestDatabase(u)
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
}, 30_000)

/** Every row of every table, values normalised independently of src/db/pg/copy.ts. */
async function dumpSqlite(path: string): Promise<Record<string, unknown[]>> {
  const db = new Database(path, { readonly: true })
  const tables = db.query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '__drizzle_migrations' ORDER BY name").all()
  const out: Record<string, unknown[]> = {}
  for (const { name } of tables) out[name] = db.query(`SELECT * FROM "${name}"`).all().map((r) => norm(r)).sort(byJson)
  db.close()
  return out
}
async function dumpPg(url: string): Promise<Record<string, unknown[]>> {
  const sql = new SQL({ adapter: 'postgres', ...parsePgUrl(url), max: 1 })
  const out: Record<string, unknown[]> = {}
  const tables = await sql`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`
  for (const { tablename } of tables) {
    const int8 = new Set<string>((await sql`SELECT column_name FROM information_schema.columns WHERE table_name = ${tablename} AND data_type = 'bigint'`).map((r: { column_name: string }) => r.column_name))
    const rows = [...(await sql.unsafe(`SELECT * FROM "${tablename}"`))].map((r: Record<string, unknown>) => {
      for (const c of int8) if (typeof r[c] === 'string') r[c] = Number(r[c])
      return r
    })
    out[tablename] = rows.map((r) => norm(r, true)).sort(byJson)
  }
  await sql.close()
  return out
}
const BOOLEAN = new Set(['builtin', 'mfa_required', 'mfa_pending', 'permanent', 'backed_up'])
const JSON_COLS = new Set(['details', 'data', 'transports'])
/** Comparable values; PostgreSQL's jsonb must come back as objects and arrays (a JSON string there is a double encoding). */
function norm(row: unknown, pg = false): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(row as Record<string, unknown>)) {
    if (v === null) out[k] = null
    else if (BOOLEAN.has(k)) out[k] = v === true || v === 1
    else if (JSON_COLS.has(k)) out[k] = typeof v === 'string' && !pg ? JSON.parse(v) : v
    else if (v instanceof Uint8Array) out[k] = `bytes:${Buffer.from(v).toString('hex')}`
    else out[k] = v
  }
  return out
}
const canon = (v: unknown): string => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x))
const byJson = (a: unknown, b: unknown) => (canon(a) < canon(b) ? -1 : 1)

describe('bulwark db copy (binary)', () => {
  test('--help answers without doing anything', async () => {
    const r = await runBinary(['db', 'copy', '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('Usage: bulwark db copy --from FROM --to TO [--force]')
  })

  test('bad endpoints are usage errors (64) and never echo a password', async () => {
    const r = await runBinary(['db', 'copy', '--from', 'mysql://u:hunter2@h/x', '--to', 'sqlite:x.sqlite'])
    expect(r.code).toBe(64)
    expect(r.stderr).toContain('is neither sqlite:PATH nor a postgres:// URL')
    expect(r.stderr).not.toContain('hunter2')
  })

  test('config check masks the password of BULWARK_DATABASE_URL', async () => {
    const r = await runBinary(['config', 'check'], { env: { BULWARK_DATABASE_URL: 'postgres://bw:t0ps3cret@127.0.0.1:5432/auth' } })
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('BULWARK_DATABASE_URL=postgres://bw:********@127.0.0.1:5432/auth')
    expect(r.stdout + r.stderr).not.toContain('t0ps3cret')
  })

  test.skipIf(!PG_URL)(`migrate migrates the PostgreSQL database of BULWARK_DATABASE_URL; backup refuses it and names the tools that copy it${PG_SKIP}`, async () => {
    const pg = await createTestDatabase()
    made.push(pg)
    const cwd = mkdtempSync(join(tmpdir(), 'bw-pg-cli-'))
    dirs.push(cwd)
    const env = { BULWARK_DATABASE_URL: pg, BULWARK_SECRET: SECRET }
    const first = await runBinary(['migrate'], { cwd, env })
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/^applied 0000_init, /)
    const admin = new SQL({ adapter: 'postgres', ...parsePgUrl(pg), max: 1 })
    try {
      expect(Number((await admin`SELECT count(*) AS n FROM drizzle.__drizzle_migrations`)[0].n)).toBeGreaterThan(3)
      expect((await admin`SELECT count(*)::int AS n FROM roles WHERE builtin`)[0].n).toBe(4)
    } finally {
      await admin.close()
    }
    const again = await runBinary(['migrate'], { cwd, env })
    expect(again.code).toBe(0)
    expect(again.stdout).toMatch(/^database is up to date \(\d+ migrations\)$/m)
    const backup = await runBinary(['backup', join(cwd, 'b.sqlite')], { cwd, env })
    expect(backup.code).toBe(1)
    expect(backup.stderr).toContain('the database is PostgreSQL')
    expect(backup.stderr).toContain('pg_dump')
    expect(backup.stderr).toContain('bulwark db copy')
    expect(readdirSync(cwd)).toEqual([])
  }, 60_000)

  test.skipIf(!PG_URL)(`secret rotate on PostgreSQL: data under A moves to B, a user signs in with B and the JWKS is unchanged, A is refused after${PG_SKIP}`, async () => {
    const pg = await createTestDatabase()
    made.push(pg)
    const cwd = mkdtempSync(join(tmpdir(), 'bw-pg-secret-'))
    dirs.push(cwd)
    const A = 'pg-secret-A-0123456789-abcdefghijklmnopqrstuv'
    const B = 'pg-secret-B-0123456789-abcdefghijklmnopqrstuv'
    const base = { BULWARK_DATABASE_URL: pg, BULWARK_ENV: 'test', BULWARK_PUBLIC_URL: 'http://localhost:3000' }
    const email = 'rotated@example.com'
    const password = 'a long rotated passphrase 42'
    const a = await startBinary({ workdir: cwd, env: { ...base, BULWARK_SECRET: A } })
    let jwks: unknown
    try {
      await signIn(a.base, email, password, true)
      jwks = (await call(a.base, 'GET', '/.well-known/jwks.json')).json
    } finally {
      await a.stop()
    }
    const wrongOld = await runBinary(['secret', 'rotate'], { cwd, env: { ...base, BULWARK_OLD_SECRET: 'not-the-secret-0123456789-abcdefghijklmnop', BULWARK_SECRET: B } })
    expect(wrongOld.code).toBe(4)
    const rotated = await runBinary(['secret', 'rotate'], { cwd, env: { ...base, BULWARK_OLD_SECRET: A, BULWARK_SECRET: B } })
    expect(rotated.stderr).toBe('')
    expect(rotated.code).toBe(0)
    expect(rotated.stdout).toContain('re-encrypted under the new secret: 1 signing_keys')
    const again = await runBinary(['secret', 'rotate'], { cwd, env: { ...base, BULWARK_OLD_SECRET: A, BULWARK_SECRET: B } })
    expect(again.code).toBe(0)
    expect(again.stdout).toContain('already uses the new secret')
    const b = await startBinary({ workdir: cwd, env: { ...base, BULWARK_SECRET: B } })
    try {
      expect((await call(b.base, 'GET', '/.well-known/jwks.json')).json).toEqual(jwks)
      const s = await signIn(b.base, email, password)
      expect((await call(b.base, 'GET', '/v1/me', { token: s.accessToken })).status).toBe(200)
    } finally {
      await b.stop()
    }
    const old = await runBinary(['serve'], { cwd, env: { ...base, BULWARK_SECRET: A, BULWARK_PORT: '0' } })
    expect(old.code).toBe(4)
  }, 90_000)

  test.skipIf(!PG_URL)(`SQLite -> PostgreSQL -> SQLite keeps every row, refuses a non-empty target, and the copy signs the user in${PG_SKIP}`, async () => {
    const w1 = mkdtempSync(join(tmpdir(), 'bw-copy-a-'))
    const w2 = mkdtempSync(join(tmpdir(), 'bw-copy-b-'))
    dirs.push(w1, w2)
    const env = { BULWARK_SECRET: SECRET, BULWARK_ENV: 'test' }
    const a = await startBinary({ workdir: w1, env })
    const email = 'copied@example.com'
    const password = 'a long copied passphrase 42'
    try {
      const s = await signIn(a.base, email, password, true)
      expect((await call(a.base, 'GET', '/v1/me', { token: s.accessToken })).status).toBe(200)
      await signIn(a.base, OWNER_EMAIL, OWNER_PASSWORD)
    } finally {
      await a.stop()
    }
    const src = join(w1, 'data', 'bulwark.sqlite')
    const pg = await createTestDatabase()
    made.push(pg)

    const there = await runBinary(['db', 'copy', '--from', `sqlite:${src}`, '--to', pg])
    expect(there.stderr).toBe('')
    expect(there.code).toBe(0)
    expect(there.stdout).toMatch(/^users\s+2 rows$/m)
    expect(there.stdout).toMatch(/counts and checksums verified/)

    const before = await dumpSqlite(src)
    const inPg = await dumpPg(pg)
    expect(Object.keys(inPg).sort()).toEqual(Object.keys(before).sort())
    expect(before.users!.length).toBe(2)
    expect(before.security_events!.length).toBeGreaterThan(2)
    for (const t of Object.keys(before)) expect({ t, rows: inPg[t] }).toEqual({ t, rows: before[t] })

    const again = await runBinary(['db', 'copy', '--from', `sqlite:${src}`, '--to', pg])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('the target is not empty: ')
    expect(again.stderr).toContain('use --force')
    const forced = await runBinary(['db', 'copy', '--from', `sqlite:${src}`, '--to', pg, '--force'])
    expect(forced.code).toBe(0)

    const back = join(w2, 'data', 'bulwark.sqlite')
    const home = await runBinary(['db', 'copy', '--from', pg, '--to', `sqlite:${back}`])
    expect(home.stderr).toBe('')
    expect(home.code).toBe(0)
    expect(await dumpSqlite(back)).toEqual(before)

    // A target migrated by a newer binary: exit 3, as `bulwark migrate` does.
    const admin = new SQL({ adapter: 'postgres', ...parsePgUrl(pg), max: 1 })
    await admin`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('from-the-future', ${Date.UTC(2099, 0, 1)})`
    await admin.close()
    const newer = await runBinary(['db', 'copy', '--from', `sqlite:${src}`, '--to', pg, '--force'])
    expect(newer.code).toBe(3)
    expect(newer.stderr).toContain('newer Bulwark')

    const b = await startBinary({ workdir: w2, env })
    try {
      const s = await signIn(b.base, email, password)
      const me = await call(b.base, 'GET', '/v1/me', { token: s.accessToken })
      expect(me.status).toBe(200)
      expect(me.json.email).toBe(email)
    } finally {
      await b.stop()
    }
  }, 120_000)
})
