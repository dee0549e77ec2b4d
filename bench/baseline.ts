/**
 * The bare baseline for the read scenarios: an Elysia app with no security plugins (no request ids, no
 * access log, no rate limit, no caches, no problem+json handler, no response schemas) that does the same
 * work per request as Bulwark's GET /v1/me and GET /v1/users?limit=20: verify the EdDSA/ES256 access token
 * with jose against the database's signing key, read the session row by id, the user row by id and the
 * roles/permissions join, then answer. The harness compiles it like the server (`bun build --compile`) and
 * pins it to the same core. Env: BENCH_DB (SQLite file), BENCH_PORT, BENCH_ISSUER, BENCH_AUDIENCE.
 */
import { Database } from 'bun:sqlite'
import { Elysia } from 'elysia'
import { createPublicKey, type KeyObject } from 'node:crypto'
import { jwtVerify, type JWK } from 'jose'

const db = new Database(process.env.BENCH_DB ?? 'bench.sqlite', { readonly: false })
db.run('PRAGMA busy_timeout = 5000')
const issuer = process.env.BENCH_ISSUER ?? 'http://127.0.0.1'
const audience = process.env.BENCH_AUDIENCE ?? 'bulwark'

const keys = new Map<string, KeyObject>()
for (const r of db.query<{ kid: string; jwk: string }, []>('SELECT kid, public_jwk AS jwk FROM signing_keys').all()) {
  keys.set(r.kid, createPublicKey({ key: JSON.parse(r.jwk) as JWK & Record<string, unknown>, format: 'jwk' }))
}

const sessionQ = db.query<{ id: string; user_id: string; revoked_at: number | null; expires_at: number }, [string]>(
  'SELECT id, user_id, revoked_at, expires_at FROM sessions WHERE id = ?',
)
const userQ = db.query<{ id: string; email: string; name: string | null; status: string; email_verified_at: number | null; created_at: number }, [string]>(
  'SELECT id, email, name, status, email_verified_at, created_at FROM users WHERE id = ?',
)
const accessQ = db.query<{ name: string; permission: string | null }, [string]>(
  'SELECT r.name AS name, rp.permission AS permission FROM user_roles ur JOIN roles r ON r.id = ur.role_id LEFT JOIN role_permissions rp ON rp.role_id = r.id WHERE ur.user_id = ?',
)
const totpQ = db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM totp_factors WHERE user_id = ? AND status = 'active'")
const passkeyQ = db.query<{ n: number }, [string]>('SELECT count(*) AS n FROM passkeys WHERE user_id = ?')
const pageQ = db.query<{ id: string; email: string; name: string | null; status: string; email_verified_at: number | null; created_at: number }, [string, number]>(
  'SELECT id, email, name, status, email_verified_at, created_at FROM users WHERE id > ? ORDER BY id LIMIT ?',
)

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
    const s = sessionQ.get(String(payload.sid))
    if (!s || s.revoked_at !== null || s.expires_at <= Date.now() || s.user_id !== payload.sub) return undefined
    const user = userQ.get(s.user_id)
    if (!user || user.status !== 'active') return undefined
    const rows = accessQ.all(user.id)
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
    return { ...view(p.user), roles: p.roles, permissions: p.permissions, mfa: { totp: totpQ.get(p.user.id)!.n > 0, passkeys: passkeyQ.get(p.user.id)!.n } }
  })
  .get('/v1/users', async ({ request, query }) => {
    const p = await principal(request)
    if (!p) return unauthorized()
    if (!p.permissions.some((x) => x === 'users:read' || x === 'users:*' || x === '*:*')) return new Response('{"status":403}', { status: 403 })
    const limit = Math.min(100, Math.max(1, Number(query.limit ?? 20)))
    const after = query.cursor ? Buffer.from(String(query.cursor), 'base64url').toString() : ''
    const rows = pageQ.all(after, limit + 1)
    const items = rows.slice(0, limit).map((u) => ({ ...view(u), status: u.status }))
    const nextCursor = rows.length > limit ? Buffer.from(items[items.length - 1]!.id).toString('base64url') : null
    return { items, nextCursor }
  })
  .listen({ hostname: '127.0.0.1', port: Number(process.env.BENCH_PORT ?? 3999) })
