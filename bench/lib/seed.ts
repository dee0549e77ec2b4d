/**
 * Seeding the bench database. A handful of accounts go through the real API (registration hashes their
 * password with the server's own hasher and parameters); the bulk is inserted directly with bun:sqlite in
 * one transaction, every bulk row reusing the ONE password hash the server computed for the first API
 * account, so all accounts share one password and a million rows take seconds instead of days of argon2.
 * Sessions, refresh tokens and access tokens for the read and refresh scenarios are made the way the
 * server makes them: rows inserted directly, refresh tokens stored as hashToken(deriveKey(secret,
 * 'token-hash'), token), access tokens signed with the server's current signing key (decrypted with the
 * key derived from the same BULWARK_SECRET) and the same claims. The project's own src/lib/crypto.ts does it.
 */
import { Database } from 'bun:sqlite'
import { createPrivateKey, type KeyObject } from 'node:crypto'
import { SignJWT } from 'jose'
import { decrypt, deriveKey, hashToken, randomToken } from '../../src/lib/crypto'

export const PASSWORD = 'Bench-Quartz-Lantern-47-Meadow!'
export const API_USERS = 5
export const ADMINS = 10
export const PUBLIC_URL = 'http://127.0.0.1'
export const AUDIENCE = 'bulwark'
export const BENCH_ROLE = 'bench-admin'
const USER_ROLE_ID = '00000000-0000-7000-8000-000000000010'

export const apiEmail = (i: number) => `bench-api-${i}@bench.test`
export const userEmail = (i: number) => `bench-user-${String(i).padStart(7, '0')}@bench.test`
export const adminEmail = (i: number) => `bench-admin-${i}@bench.test`

async function post(url: string, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await r.text()
  let json: Record<string, unknown> = {}
  try {
    json = JSON.parse(text) as Record<string, unknown>
  } catch {}
  return { status: r.status, json }
}

/** Registers the API accounts and signs one of them in, through the real HTTP API. */
export async function seedThroughApi(url: string): Promise<void> {
  for (let i = 0; i < API_USERS; i++) {
    const r = await post(url, '/v1/auth/register', { email: apiEmail(i), password: PASSWORD, name: `Bench API ${i}` })
    if (r.status !== 201 && r.status !== 409) throw new Error(`register through the API answered ${r.status}: ${JSON.stringify(r.json)}`)
  }
  const login = await post(url, '/v1/auth/login', { email: apiEmail(0), password: PASSWORD })
  if (login.status !== 200 || typeof login.json.accessToken !== 'string') throw new Error(`login through the API answered ${login.status}: ${JSON.stringify(login.json)}`)
}

export function openDb(path: string): Database {
  const db = new Database(path)
  db.run('PRAGMA busy_timeout = 10000')
  db.run('PRAGMA journal_mode = WAL')
  db.run('PRAGMA synchronous = NORMAL')
  return db
}

export interface Seeded {
  /** Ids of the bulk users, in insertion (= id) order. */
  userIds: string[]
  adminIds: string[]
  /** Whether the admins hold the built-in admin role's MFA requirement (they do not: see README). */
  adminRole: string
}

/**
 * Inserts `n` users (role `user`) and the admins in one transaction. Admins get a bench-only role
 * `bench-admin` (level 90, mfa_required = 0, permissions users:read and authz:check) instead of the
 * built-in `admin`, whose mfa_required would confine a build that enforces MFA enrolment to the enrolment routes.
 */
export function bulkSeed(db: Database, n: number): Seeded {
  const row = db.query<{ h: string }, [string]>('SELECT password_hash AS h FROM users WHERE email = ?').get(apiEmail(0))
  if (!row?.h) throw new Error('the API-registered account is missing: cannot reuse its password hash')
  const hash = row.h
  const now = Date.now()
  const userIds: string[] = new Array(n)
  const adminIds: string[] = []
  const insUser = db.prepare(
    'INSERT INTO users (id, email, name, password_hash, status, email_verified_at, password_changed_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  )
  const insRole = db.prepare('INSERT INTO user_roles (user_id, role_id, granted_by, created_at) VALUES (?, ?, NULL, ?)')
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const id = Bun.randomUUIDv7()
      userIds[i] = id
      insUser.run(id, userEmail(i), `Bench User ${i}`, hash, 'active', now, now, now, now)
      insRole.run(id, USER_ROLE_ID, now)
    }
    const roleId = Bun.randomUUIDv7()
    db.prepare('INSERT INTO roles (id, name, level, description, builtin, mfa_required, created_at, updated_at) VALUES (?, ?, 90, ?, 0, 0, ?, ?)').run(
      roleId,
      BENCH_ROLE,
      'bench only: reads users and checks authorisation, no MFA requirement',
      now,
      now,
    )
    for (const p of ['users:read', 'authz:check']) db.prepare('INSERT INTO role_permissions (role_id, permission) VALUES (?, ?)').run(roleId, p)
    for (let i = 0; i < ADMINS; i++) {
      const id = Bun.randomUUIDv7()
      adminIds.push(id)
      insUser.run(id, adminEmail(i), `Bench Admin ${i}`, hash, 'active', now, now, now, now)
      insRole.run(id, USER_ROLE_ID, now)
      insRole.run(id, roleId, now)
    }
  })()
  db.run('ANALYZE')
  return { userIds, adminIds, adminRole: BENCH_ROLE }
}

/** Inserts one live bearer session per user id (in one transaction); returns the session ids. */
export function insertSessions(db: Database, userIds: string[]): string[] {
  const now = Date.now()
  const ins = db.prepare(
    "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, ip, user_agent, transport, amr, auth_time, mfa_pending, revoked_at, revoked_reason) VALUES (?, ?, ?, ?, ?, '127.0.0.1', 'bulwark-bench', 'bearer', 'pwd', ?, 0, NULL, NULL)",
  )
  const ids: string[] = []
  db.transaction(() => {
    for (const u of userIds) {
      const id = Bun.randomUUIDv7()
      ins.run(id, u, now, now, now + 30 * 86_400_000, now)
      ids.push(id)
    }
  })()
  return ids
}

/** Inserts one session and one unspent refresh token per user id; returns the plain refresh tokens. */
export function insertRefreshTokens(db: Database, secret: string, userIds: string[]): string[] {
  const key = deriveKey(secret, 'token-hash')
  const sessionIds = insertSessions(db, userIds)
  const now = Date.now()
  const ins = db.prepare('INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at, used_at, replaced_by) VALUES (?, ?, ?, ?, ?, NULL, NULL)')
  const tokens: string[] = []
  db.transaction(() => {
    for (const sid of sessionIds) {
      const t = randomToken(32)
      ins.run(Bun.randomUUIDv7(), sid, hashToken(key, t), now, now + 30 * 86_400_000)
      tokens.push(t)
    }
  })()
  return tokens
}

/** Signs access tokens like the server does (its current key, same claims), valid for `ttlS` seconds. */
export class TokenMinter {
  private constructor(
    private readonly kid: string,
    private readonly alg: string,
    private readonly key: KeyObject,
  ) {}

  static load(db: Database, secret: string): TokenMinter {
    const row = db
      .query<{ kid: string; alg: string; enc: string }, []>('SELECT kid, alg, private_jwk_enc AS enc FROM signing_keys WHERE rotated_at IS NULL ORDER BY created_at DESC LIMIT 1')
      .get()
    if (!row) throw new Error('no signing key in the database (did the server start once?)')
    const jwk = JSON.parse(decrypt(deriveKey(secret, 'encryption'), row.enc, `jwk:${row.kid}`)) as Record<string, unknown>
    return new TokenMinter(row.kid, row.alg, createPrivateKey({ key: jwk as never, format: 'jwk' }))
  }

  async mint(sub: string, sid: string, ttlS = 4 * 3600): Promise<string> {
    const iat = Math.floor(Date.now() / 1000)
    return new SignJWT({ sid })
      .setProtectedHeader({ alg: this.alg, kid: this.kid, typ: 'JWT' })
      .setIssuer(PUBLIC_URL)
      .setAudience(AUDIENCE)
      .setSubject(sub)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ttlS)
      .setJti(randomToken(16))
      .sign(this.key)
  }

  /** A session and an access token for each user id. */
  async sessionsWithTokens(db: Database, userIds: string[]): Promise<{ userId: string; token: string }[]> {
    const sids = insertSessions(db, userIds)
    return Promise.all(userIds.map(async (u, i) => ({ userId: u, token: await this.mint(u, sids[i]!) })))
  }
}
