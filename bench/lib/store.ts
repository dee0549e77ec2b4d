/**
 * The bench's direct access to the server's database, on either engine: the bulk seed (users, the bench
 * role, sessions, refresh tokens), the signing key and the seeded password hash. SQLite is written with
 * bun:sqlite in transactions of prepared inserts; PostgreSQL with Bun's SQL client in multi-row INSERTs of
 * up to 5,000 rows (one statement per chunk, one transaction). The rows are the same on both engines,
 * column for column; only booleans differ (0/1 on SQLite, false/true on PostgreSQL).
 *
 * PostgreSQL runs get their own database (`bw_bench_<random>`), created on the admin URL before the
 * server first starts (the server migrates it) and dropped at the end; see createBenchDatabase.
 */
import { Database } from 'bun:sqlite'
import { SQL } from 'bun'
import { deriveKey, hashToken, randomToken } from '../../src/lib/crypto'
import { parsePgUrl } from '../../src/db/pg/client'
import { cpuMsOf } from './proc'

export type Engine = 'sqlite' | 'postgres'

export const BENCH_ROLE = 'bench-admin'
export const ADMINS = 10
const USER_ROLE_ID = '00000000-0000-7000-8000-000000000010'
const DAY = 86_400_000

export const apiEmail = (i: number) => `bench-api-${i}@bench.test`
export const userEmail = (i: number) => `bench-user-${String(i).padStart(7, '0')}@bench.test`
export const adminEmail = (i: number) => `bench-admin-${i}@bench.test`

export interface Seeded {
  /** Ids of the bulk users, in insertion (= id) order. */
  userIds: string[]
  adminIds: string[]
  adminRole: string
}

export interface SigningKeyRow {
  kid: string
  alg: string
  enc: string
}

/** What the harness reads and writes directly, the same on both engines. */
export interface BenchStore {
  engine: Engine
  /** The stored argon2id hash of one account. */
  passwordHash(email: string): Promise<string | undefined>
  /** The current signing key (private JWK, encrypted). */
  signingKey(): Promise<SigningKeyRow | undefined>
  /** `n` users (role `user`), the bench role and the admins; then refreshes the planner statistics. */
  bulkSeed(n: number): Promise<Seeded>
  /** One live bearer session per user id; returns the session ids. */
  insertSessions(userIds: string[]): Promise<string[]>
  /** One session and one unspent refresh token per user id; returns the plain refresh tokens. */
  insertRefreshTokens(secret: string, userIds: string[]): Promise<string[]>
  close(): Promise<void>
}

interface Rows {
  users: unknown[][]
  userRoles: unknown[][]
}

/** The bulk rows for users `from`..`to`-1, their ids pushed to `ids`. */
function userRows(hash: string, from: number, to: number, now: number, ids: string[]): Rows {
  const users: unknown[][] = []
  const userRoles: unknown[][] = []
  for (let i = from; i < to; i++) {
    const id = Bun.randomUUIDv7()
    ids.push(id)
    users.push([id, userEmail(i), `Bench User ${i}`, hash, 'active', now, now, now, now])
    userRoles.push([id, USER_ROLE_ID, null, now])
  }
  return { users, userRoles }
}

const USER_COLS = ['id', 'email', 'name', 'password_hash', 'status', 'email_verified_at', 'password_changed_at', 'created_at', 'updated_at'] as const
const USER_ROLE_COLS = ['user_id', 'role_id', 'granted_by', 'created_at'] as const
const SESSION_COLS = ['id', 'user_id', 'created_at', 'last_seen_at', 'expires_at', 'ip', 'user_agent', 'transport', 'amr', 'auth_time', 'mfa_pending', 'revoked_at', 'revoked_reason'] as const
const REFRESH_COLS = ['id', 'session_id', 'token_hash', 'created_at', 'expires_at', 'used_at', 'replaced_by'] as const

function sessionRow(id: string, userId: string, now: number, mfaPending: unknown): unknown[] {
  return [id, userId, now, now, now + 30 * DAY, '127.0.0.1', 'bulwark-bench', 'bearer', 'pwd', now, mfaPending, null, null]
}

// ---------------------------------------------------------------- SQLite

export class SqliteStore implements BenchStore {
  readonly engine = 'sqlite' as const
  readonly db: Database

  constructor(readonly path: string) {
    this.db = new Database(path)
    this.db.run('PRAGMA busy_timeout = 10000')
    this.db.run('PRAGMA journal_mode = WAL')
    this.db.run('PRAGMA synchronous = NORMAL')
  }

  async passwordHash(email: string) {
    return this.db.query<{ h: string }, [string]>('SELECT password_hash AS h FROM users WHERE email = ?').get(email)?.h
  }

  async signingKey() {
    return this.db.query<SigningKeyRow, []>('SELECT kid, alg, private_jwk_enc AS enc FROM signing_keys WHERE rotated_at IS NULL ORDER BY created_at DESC LIMIT 1').get() ?? undefined
  }

  private insert(table: string, cols: readonly string[]) {
    return this.db.prepare(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`)
  }

  async bulkSeed(n: number): Promise<Seeded> {
    const hash = await requireHash(this)
    const now = Date.now()
    const userIds: string[] = []
    const adminIds: string[] = []
    const insUser = this.insert('users', USER_COLS)
    const insRole = this.insert('user_roles', USER_ROLE_COLS)
    this.db.transaction(() => {
      for (let i = 0; i < n; i += 10_000) {
        const r = userRows(hash, i, Math.min(n, i + 10_000), now, userIds)
        for (const u of r.users) insUser.run(...(u as never[]))
        for (const ur of r.userRoles) insRole.run(...(ur as never[]))
      }
      const roleId = Bun.randomUUIDv7()
      this.db.prepare('INSERT INTO roles (id, name, level, description, builtin, mfa_required, created_at, updated_at) VALUES (?, ?, 90, ?, 0, 0, ?, ?)').run(roleId, BENCH_ROLE, ROLE_DESCRIPTION, now, now)
      for (const p of BENCH_PERMISSIONS) this.db.prepare('INSERT INTO role_permissions (role_id, permission) VALUES (?, ?)').run(roleId, p)
      for (let i = 0; i < ADMINS; i++) {
        const id = Bun.randomUUIDv7()
        adminIds.push(id)
        insUser.run(id, adminEmail(i), `Bench Admin ${i}`, hash, 'active', now, now, now, now)
        insRole.run(id, USER_ROLE_ID, null, now)
        insRole.run(id, roleId, null, now)
      }
    })()
    this.db.run('ANALYZE')
    return { userIds, adminIds, adminRole: BENCH_ROLE }
  }

  async insertSessions(userIds: string[]): Promise<string[]> {
    const now = Date.now()
    const ins = this.insert('sessions', SESSION_COLS)
    const ids: string[] = []
    this.db.transaction(() => {
      for (const u of userIds) {
        const id = Bun.randomUUIDv7()
        ins.run(...(sessionRow(id, u, now, 0) as never[]))
        ids.push(id)
      }
    })()
    return ids
  }

  async insertRefreshTokens(secret: string, userIds: string[]): Promise<string[]> {
    const key = deriveKey(secret, 'token-hash')
    const sessionIds = await this.insertSessions(userIds)
    const now = Date.now()
    const ins = this.insert('refresh_tokens', REFRESH_COLS)
    const tokens: string[] = []
    this.db.transaction(() => {
      for (const sid of sessionIds) {
        const t = randomToken(32)
        ins.run(Bun.randomUUIDv7(), sid, hashToken(key, t), now, now + 30 * DAY, null, null)
        tokens.push(t)
      }
    })()
    return tokens
  }

  async close() {
    this.db.close()
  }
}

const ROLE_DESCRIPTION = 'bench only: reads users and checks authorisation, no MFA requirement'
const BENCH_PERMISSIONS = ['users:read', 'authz:check']

async function requireHash(s: BenchStore): Promise<string> {
  const h = await s.passwordHash(apiEmail(0))
  if (!h) throw new Error('the API-registered account is missing: cannot reuse its password hash')
  return h
}

// ---------------------------------------------------------------- PostgreSQL

/** Rows a multi-row INSERT carries (× columns stays far below PostgreSQL's 65,535 parameters). */
const PG_CHUNK = 5000

export class PgStore implements BenchStore {
  readonly engine = 'postgres' as const
  readonly sql: SQL

  constructor(readonly url: string) {
    this.sql = new SQL({ adapter: 'postgres', ...parsePgUrl(url), max: 2, idleTimeout: 30, connection: { application_name: 'bulwark-bench' } })
  }

  async passwordHash(email: string) {
    const r = await this.sql<{ h: string }[]>`SELECT password_hash AS h FROM users WHERE email = ${email}`
    return r[0]?.h
  }

  async signingKey() {
    const r = await this.sql<SigningKeyRow[]>`SELECT kid, alg, private_jwk_enc AS enc FROM signing_keys WHERE rotated_at IS NULL ORDER BY created_at DESC LIMIT 1`
    return r[0]
  }

  /** `INSERT INTO table (cols) VALUES (…), (…)` in chunks, inside `tx`. */
  private async insertMany(tx: SQL, table: string, cols: readonly string[], rows: unknown[][]): Promise<void> {
    for (let i = 0; i < rows.length; i += PG_CHUNK) {
      const chunk = rows.slice(i, i + PG_CHUNK).map((r) => Object.fromEntries(cols.map((c, j) => [c, r[j]])))
      await tx`INSERT INTO ${tx(table)} ${tx(chunk, ...cols)}`
    }
  }

  async bulkSeed(n: number): Promise<Seeded> {
    const hash = await requireHash(this)
    const now = Date.now()
    const userIds: string[] = []
    const adminIds: string[] = []
    await this.sql.begin(async (tx) => {
      for (let i = 0; i < n; i += 50_000) {
        const r = userRows(hash, i, Math.min(n, i + 50_000), now, userIds)
        await this.insertMany(tx, 'users', USER_COLS, r.users)
        await this.insertMany(tx, 'user_roles', USER_ROLE_COLS, r.userRoles)
      }
      const roleId = Bun.randomUUIDv7()
      await tx`INSERT INTO roles (id, name, level, description, builtin, mfa_required, created_at, updated_at) VALUES (${roleId}, ${BENCH_ROLE}, 90, ${ROLE_DESCRIPTION}, false, false, ${now}, ${now})`
      for (const p of BENCH_PERMISSIONS) await tx`INSERT INTO role_permissions (role_id, permission) VALUES (${roleId}, ${p})`
      const admins: unknown[][] = []
      const roles: unknown[][] = []
      for (let i = 0; i < ADMINS; i++) {
        const id = Bun.randomUUIDv7()
        adminIds.push(id)
        admins.push([id, adminEmail(i), `Bench Admin ${i}`, hash, 'active', now, now, now, now])
        roles.push([id, USER_ROLE_ID, null, now], [id, roleId, null, now])
      }
      await this.insertMany(tx, 'users', USER_COLS, admins)
      await this.insertMany(tx, 'user_roles', USER_ROLE_COLS, roles)
    })
    // Fresh statistics and visibility map, as autovacuum would leave them on a long-lived database.
    await this.sql.unsafe('VACUUM (ANALYZE) users, user_roles, roles, role_permissions')
    return { userIds, adminIds, adminRole: BENCH_ROLE }
  }

  async insertSessions(userIds: string[]): Promise<string[]> {
    const now = Date.now()
    const ids: string[] = []
    const rows = userIds.map((u) => {
      const id = Bun.randomUUIDv7()
      ids.push(id)
      return sessionRow(id, u, now, false)
    })
    await this.sql.begin((tx) => this.insertMany(tx, 'sessions', SESSION_COLS, rows))
    await this.sql.unsafe('ANALYZE sessions')
    return ids
  }

  async insertRefreshTokens(secret: string, userIds: string[]): Promise<string[]> {
    const key = deriveKey(secret, 'token-hash')
    const sessionIds = await this.insertSessions(userIds)
    const now = Date.now()
    const tokens: string[] = []
    const rows = sessionIds.map((sid) => {
      const t = randomToken(32)
      tokens.push(t)
      return [Bun.randomUUIDv7(), sid, hashToken(key, t), now, now + 30 * DAY, null, null]
    })
    await this.sql.begin((tx) => this.insertMany(tx, 'refresh_tokens', REFRESH_COLS, rows))
    await this.sql.unsafe('ANALYZE refresh_tokens')
    return tokens
  }

  async close() {
    await this.sql.close({ timeout: 5 })
  }
}

// ---------------------------------------------------------------- PostgreSQL databases of a run

const BENCH_DB_NAME = /^bw_bench_[0-9a-f]{16}$/

const adminSql = (adminUrl: string) => new SQL({ adapter: 'postgres', ...parsePgUrl(adminUrl), max: 1, connectionTimeout: 10 })

/** Creates `bw_bench_<random>` on the server of `adminUrl` (which names an existing database); returns its URL. */
export async function createBenchDatabase(adminUrl: string): Promise<string> {
  const name = `bw_bench_${randomHex(8)}`
  const a = adminSql(adminUrl)
  try {
    await a.unsafe(`CREATE DATABASE "${name}"`)
  } finally {
    await a.close()
  }
  const u = new URL(adminUrl)
  u.pathname = `/${name}`
  return u.toString()
}

/** Drops a database made by createBenchDatabase (refuses any other name). */
export async function dropBenchDatabase(adminUrl: string, url: string): Promise<void> {
  const name = parsePgUrl(url).database
  if (!BENCH_DB_NAME.test(name)) throw new Error(`refusing to drop ${name}`)
  const a = adminSql(adminUrl)
  try {
    await a.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  } finally {
    await a.close()
  }
}

function randomHex(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString('hex')
}

/**
 * CPU (user + system, ms) used so far by the PostgreSQL backends connected to `database`, by pid, read from
 * /proc (so only when the server runs on this machine; undefined otherwise). Backends are not pinned: they
 * run on whichever core is free, next to the server or the load generator.
 */
export async function backendCpu(adminUrl: string, database: string): Promise<Map<number, number> | undefined> {
  const a = adminSql(adminUrl)
  try {
    const rows = await a<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE datname = ${database} AND backend_type = 'client backend'`
    const out = new Map<number, number>()
    for (const r of rows) {
      const ms = cpuMsOf(r.pid)
      if (ms === undefined) return undefined
      out.set(r.pid, ms)
    }
    return out
  } catch {
    return undefined
  } finally {
    await a.close()
  }
}
