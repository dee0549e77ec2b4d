/**
 * The bare baseline for the read scenarios: an Elysia app with no security plugins (no request ids, no
 * access log, no rate limit, no caches, no problem+json handler, no response schemas) that does the same
 * work per request as Bulwark's GET /v1/me and GET /v1/users?limit=20: verify the EdDSA/ES256 access token
 * with jose against the database's signing key, read the session row by id, the user row by id and the
 * roles/permissions join, then answer. The harness compiles it like the server (`bun build --compile`) and
 * pins it to the same core. Env: BENCH_DB (SQLite file) or BENCH_PG_URL (PostgreSQL: the same reads with Bun's
 * SQL client), BENCH_PORT, BENCH_ISSUER, BENCH_AUDIENCE.
 */
import { Database } from 'bun:sqlite'
import { SQL } from 'bun'
import { Elysia } from 'elysia'
import { createPublicKey, type KeyObject } from 'node:crypto'
import { jwtVerify, type JWK } from 'jose'

const issuer = process.env.BENCH_ISSUER ?? 'http://127.0.0.1'
const audience = process.env.BENCH_AUDIENCE ?? 'bulwark'

type UserRow = { id: string; email: string; name: string | null; status: string; email_verified_at: number | null; created_at: number }
type SessionRow = { id: string; user_id: string; revoked_at: number | null; expires_at: number }

/** The reads of the two routes, on one engine. */
interface Reads {
  keys(): Promise<{ kid: string; jwk: string }[]>
  session(id: string): Promise<SessionRow | undefined>
  user(id: string): Promise<UserRow | undefined>
  access(userId: string): Promise<{ name: string; permission: string | null }[]>
  totp(userId: string): Promise<number>
  passkeys(userId: string): Promise<number>
  page(after: string, limit: number): Promise<UserRow[]>
}

const USER_COLS = 'id, email, name, status, email_verified_at, created_at'

function sqliteReads(path: string): Reads {
  const db = new Database(path, { readonly: false })
  db.run('PRAGMA busy_timeout = 5000')
  const sessionQ = db.query<SessionRow, [string]>('SELECT id, user_id, revoked_at, expires_at FROM sessions WHERE id = ?')
  const userQ = db.query<UserRow, [string]>(`SELECT ${USER_COLS} FROM users WHERE id = ?`)
  const accessQ = db.query<{ name: string; permission: string | null }, [string]>(
    'SELECT r.name AS name, rp.permission AS permission FROM user_roles ur JOIN roles r ON r.id = ur.role_id LEFT JOIN role_permissions rp ON rp.role_id = r.id WHERE ur.user_id = ?',
  )
  const totpQ = db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM totp_factors WHERE user_id = ? AND status = 'active'")
  const passkeyQ = db.query<{ n: number }, [string]>('SELECT count(*) AS n FROM passkeys WHERE user_id = ?')
  const pageQ = db.query<UserRow, [string, number]>(`SELECT ${USER_COLS} FROM users WHERE id > ? ORDER BY id LIMIT ?`)
  return {
    keys: async () => db.query<{ kid: string; jwk: string }, []>('SELECT kid, public_jwk AS jwk FROM signing_keys').all(),
    session: async (id) => sessionQ.get(id) ?? undefined,
    user: async (id) => userQ.get(id) ?? undefined,
    access: async (u) => accessQ.all(u),
    totp: async (u) => totpQ.get(u)!.n,
    passkeys: async (u) => passkeyQ.get(u)!.n,
    page: async (after, limit) => pageQ.all(after, limit),
  }
}

/**
 * The same statements on PostgreSQL with Bun's SQL client (each tagged query is prepared once per
 * connection), a pool of BENCH_PG_POOL connections (default 10, the server's BULWARK_DB_POOL_SIZE default).
 * Times are int8 columns: read as numbers like the server's drizzle columns (`mode: 'number'`).
 */
function pgReads(url: string): Reads {
  const u = new URL(url)
  const sql = new SQL({
    adapter: 'postgres',
    hostname: u.hostname,
    port: Number(u.port || 5432),
    username: decodeURIComponent(u.username) || 'postgres',
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.slice(1)),
    max: Number(process.env.BENCH_PG_POOL ?? 10),
    bigint: false,
  })
  const num = (v: unknown) => (v === null ? null : Number(v))
  const userOf = (r: UserRow): UserRow => ({ ...r, email_verified_at: num(r.email_verified_at), created_at: Number(r.created_at) })
  return {
    keys: async () => [...(await sql<{ kid: string; jwk: string }[]>`SELECT kid, public_jwk AS jwk FROM signing_keys`)],
    session: async (id) => {
      const r = (await sql<SessionRow[]>`SELECT id, user_id, revoked_at, expires_at FROM sessions WHERE id = ${id}`)[0]
      return r && { ...r, revoked_at: num(r.revoked_at), expires_at: Number(r.expires_at) }
    },
    user: async (id) => {
      const r = (await sql<UserRow[]>`SELECT id, email, name, status, email_verified_at, created_at FROM users WHERE id = ${id}`)[0]
      return r && userOf(r)
    },
    access: async (userId) => [
      ...(await sql<{ name: string; permission: string | null }[]>`SELECT r.name AS name, rp.permission AS permission FROM user_roles ur JOIN roles r ON r.id = ur.role_id LEFT JOIN role_permissions rp ON rp.role_id = r.id WHERE ur.user_id = ${userId}`),
    ],
    totp: async (userId) => Number((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM totp_factors WHERE user_id = ${userId} AND status = 'active'`)[0]!.n),
    passkeys: async (userId) => Number((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM passkeys WHERE user_id = ${userId}`)[0]!.n),
    page: async (after, limit) => (await sql<UserRow[]>`SELECT id, email, name, status, email_verified_at, created_at FROM users WHERE id > ${after} ORDER BY id LIMIT ${limit}`).map(userOf),
  }
}

const reads = process.env.BENCH_PG_URL ? pgReads(process.env.BENCH_PG_URL) : sqliteReads(process.env.BENCH_DB ?? 'bench.sqlite')

const keys = new Map<string, KeyObject>()
for (const r of await reads.keys()) {
  keys.set(r.kid, createPublicKey({ key: JSON.parse(r.jwk) as JWK & Record<string, unknown>, format: 'jwk' }))
}

const unauthorized = () => new Response('{"status":401}', { status: 401, headers: { 'content-type': 'application/json' } })

async function principal(request: Request) {
  const m = /^Bearer (.+)$/.exec(request.headers.get('authorization') ?? '')
  if (!m) return undefined
  try {
    const { payload } = await jwtVerify(
      m[1]!,
      (h) => {
        const k = keys.get(h.kid ?? '')
        if (!k) throw new Error('kid')
        return k
      },
      { algorithms: ['EdDSA', 'ES256'], issuer, audience, requiredClaims: ['exp', 'iat', 'sub', 'sid', 'jti'] },
    )
    const s = await reads.session(String(payload.sid))
    if (!s || s.revoked_at !== null || s.expires_at <= Date.now() || s.user_id !== payload.sub) return undefined
    const user = await reads.user(s.user_id)
    if (!user || user.status !== 'active') return undefined
    const rows = await reads.access(user.id)
    return {
      user,
      roles: [...new Set(rows.map((r) => r.name))],
      permissions: [...new Set(rows.map((r) => r.permission).filter((p): p is string => p !== null))],
    }
  } catch {
    return undefined
  }
}

const view = (u: { id: string; email: string; name: string | null; email_verified_at: number | null; created_at: number }) => ({
  id: u.id,
  email: u.email,
  name: u.name,
  emailVerified: u.email_verified_at !== null,
  createdAt: new Date(u.created_at).toISOString(),
})

new Elysia()
  .get('/health/ready', () => ({ status: 'ok' }))
  .get('/v1/me', async ({ request }) => {
    const p = await principal(request)
    if (!p) return unauthorized()
    return { ...view(p.user), roles: p.roles, permissions: p.permissions, mfa: { totp: (await reads.totp(p.user.id)) > 0, passkeys: await reads.passkeys(p.user.id) } }
  })
  .get('/v1/users', async ({ request, query }) => {
    const p = await principal(request)
    if (!p) return unauthorized()
    if (!p.permissions.some((x) => x === 'users:read' || x === 'users:*' || x === '*:*')) return new Response('{"status":403}', { status: 403 })
    const limit = Math.min(100, Math.max(1, Number(query.limit ?? 20)))
    const after = query.cursor ? Buffer.from(String(query.cursor), 'base64url').toString() : ''
    const rows = await reads.page(after, limit + 1)
    const items = rows.slice(0, limit).map((u) => ({ ...view(u), status: u.status }))
    const nextCursor = rows.length > limit ? Buffer.from(items[items.length - 1]!.id).toString('base64url') : null
    return { items, nextCursor }
  })
  .listen({ hostname: '127.0.0.1', port: Number(process.env.BENCH_PORT ?? 3999) })
