/**
 * Accounts and database inspection for the black-box suites, on top of harness.ts (still no source imports).
 * The harness's owner must enrol a second factor before admin routes open (owner sessions without one are
 * confined to MFA enrolment), so `ownerWithTotp` enrols TOTP over the API like a real user would.
 */
import { Database } from 'bun:sqlite'
import { join } from 'node:path'
import * as OTPAuth from 'otpauth'
import { call, databaseUrlOf, OWNER_EMAIL, OWNER_PASSWORD, signIn, type Running, type Session } from './harness'

/**
 * Rate limits raised far above what a suite sends: every request of a suite comes from 127.0.0.1, so the
 * default per-IP limits (10 sign-ins a minute, 5 registrations an hour, 300 anonymous requests a minute)
 * would answer 429 long before the cases run out. The limits stay on, so their headers are still sent.
 */
export const RAISED_LIMITS: Record<string, string> = {
  BULWARK_RATE_LIMIT_ANON: '1000000',
  BULWARK_RATE_LIMIT_USER: '1000000',
  BULWARK_RATE_LIMIT_MODERATOR: '1000000',
  BULWARK_RATE_LIMIT_ADMIN: '1000000',
  BULWARK_RATE_LIMIT_ROUTES: ['login-ip', 'login-account', 'register-ip', 'forgot-ip', 'forgot-account', 'mfa-token', 'passkey-ip', 'authz-user'].map((n) => `${n}=1000000/1m`).join(','),
}

export interface OwnerSession extends Session {
  totp: OTPAuth.TOTP
}

/** Resolves once the binary has created the first owner (it does so just after it starts listening). */
export async function ownerCreated(bin: Pick<Running, 'stdout'>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (bin.stdout().includes('created the first owner')) return
    await Bun.sleep(10)
  }
  throw new Error(`the binary did not create the first owner: ${bin.stdout().slice(-500)}`)
}

/** Signs in as the harness's owner and enrols TOTP in that session, which lifts its MFA-enrolment confinement. */
export async function ownerWithTotp(bin: Pick<Running, 'base' | 'stdout'>): Promise<OwnerSession> {
  await ownerCreated(bin)
  const base = bin.base
  const s = await signIn(base, OWNER_EMAIL, OWNER_PASSWORD)
  const e = await call(base, 'POST', '/v1/me/mfa/totp', { token: s.accessToken })
  if (e.status !== 200) throw new Error(`totp enrol: ${e.status} ${e.text}`)
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(e.json.secret), digits: 6, period: 30, algorithm: 'SHA1' })
  const c = await call(base, 'POST', '/v1/me/mfa/totp/confirm', { token: s.accessToken, body: { code: totp.generate() } })
  if (c.status !== 200) throw new Error(`totp confirm: ${c.status} ${c.text}`)
  return { ...s, totp }
}

/** Rows of one query (`?` placeholders) on the run folder's database, SQLite (read-only) or PostgreSQL; bigint counts as numbers. */
export async function dbRows<R = Record<string, unknown>>(workdir: string, query: string, params: (string | number)[] = []): Promise<R[]> {
  const url = databaseUrlOf(workdir)
  if (url) {
    const sql = new Bun.SQL(url, { max: 1 })
    try {
      let n = 0
      const rows = (await sql.unsafe(query.replace(/\?/g, () => `$${++n}`), params)) as Record<string, unknown>[]
      return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' || (k === 'n' && typeof v === 'string') ? Number(v) : v]))) as R[]
    } finally {
      await sql.close()
    }
  }
  const db = new Database(join(workdir, 'data', 'bulwark.sqlite'), { readonly: true })
  try {
    return db.query(query).all(...params) as R[]
  } finally {
    db.close()
  }
}

/** Row counts of every table of the run folder's database: its SQLite file through a read-only connection, or its PostgreSQL database. */
export async function rowCounts(workdir: string): Promise<Record<string, number>> {
  const url = databaseUrlOf(workdir)
  if (url) {
    const sql = new Bun.SQL(url, { max: 1 })
    try {
      const tables = (await sql`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`) as { tablename: string }[]
      const out: Record<string, number> = {}
      for (const { tablename } of tables) out[tablename] = Number((await sql.unsafe(`SELECT count(*) AS n FROM "${tablename.replace(/"/g, '""')}"`))[0].n)
      return out
    } finally {
      await sql.close()
    }
  }
  const db = new Database(join(workdir, 'data', 'bulwark.sqlite'), { readonly: true })
  try {
    const tables = db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]
    return Object.fromEntries(tables.map(({ name }) => [name, (db.query(`SELECT count(*) AS n FROM "${name.replace(/"/g, '""')}"`).get() as { n: number }).n]))
  } finally {
    db.close()
  }
}
