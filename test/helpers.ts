/**
 * Test helpers: a whole app on a fresh in-memory database with a fake clock, driven through
 * `app.handle()` (the HTTP contract, no socket), plus small request builders.
 */
import type { AnyElysia } from 'elysia'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { buildDeps, createApp, createHandler, type AppDeps } from '../src/app'
import { testConfig } from '../src/config'
import { FakeClock } from '../src/lib/clock'
import { createLogger } from '../src/lib/logger'
import { dropPgDatabase, freshPgDatabase, TEST_ON_PG } from './support/pg-apps'
import { sqlExec } from './support/sql'
import { asc, eq } from 'drizzle-orm'
import { mailOutbox } from '../src/db/tables'

export interface TestApp {
  deps: AppDeps
  clock: FakeClock
  app: ReturnType<typeof createApp>
  /** Log lines written so far (parsed JSON). */
  logs: Record<string, unknown>[]
  handle(request: Request, ip?: string): Promise<Response>
  req(method: string, path: string, opts?: ReqOpts): Promise<TestResponse>
  close(): Promise<void>
}

export interface ReqOpts {
  body?: unknown
  /** Raw body, sent as is. */
  raw?: BodyInit
  headers?: Record<string, string>
  token?: string
  ip?: string
}

export interface TestResponse {
  status: number
  headers: Headers
  body: any
  text: string
}

export async function makeApp(env: Record<string, string> = {}, opts: { logLevel?: string; routes?: (deps: AppDeps) => AnyElysia } = {}): Promise<TestApp> {
  const clock = new FakeClock()
  const logs: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line))
      cb()
    },
  })
  // BULWARK_TEST_DB=postgres: every app gets a fresh PostgreSQL database (a copy of a migrated template).
  const pgUrl = TEST_ON_PG && !env.BULWARK_DATABASE_URL ? await freshPgDatabase() : undefined
  const config = testConfig(pgUrl ? { ...env, BULWARK_DATABASE_URL: pgUrl } : env)
  const logger = createLogger(opts.logLevel ?? 'info', sink)
  const deps = await buildDeps(config, { clock, logger })
  // `routes` mounts extra controllers (e.g. with a test auth stand-in) on the real app.
  const app = opts.routes ? (createApp(deps).use(opts.routes(deps)) as unknown as ReturnType<typeof createApp>) : createApp(deps)
  const handler = createHandler(app, deps)
  const handle = (request: Request, ip = '203.0.113.10') => handler(request, ip)
  const req = async (method: string, path: string, o: ReqOpts = {}): Promise<TestResponse> => {
    const headers: Record<string, string> = { ...o.headers }
    let body: BodyInit | undefined = o.raw
    if (o.body !== undefined) {
      body = JSON.stringify(o.body)
      headers['content-type'] ??= 'application/json'
    }
    if (o.token) headers.authorization = `Bearer ${o.token}`
    const res = await handle(new Request(`http://localhost${path}`, { method, headers, body }), o.ip)
    const text = await res.text()
    let parsed: unknown = undefined
    try {
      parsed = text ? JSON.parse(text) : undefined
    } catch {}
    return { status: res.status, headers: res.headers, body: parsed, text }
  }
  const close = async () => {
    await deps.close()
    if (pgUrl) await dropPgDatabase(pgUrl)
  }
  return { deps, clock, app, logs, handle, req, close }
}

/**
 * A database that outlives one app, for restarts and for several instances on one database (pass `env` to each
 * makeApp): a SQLite file in a new temporary folder or, with BULWARK_TEST_DB=postgres, a fresh PostgreSQL database.
 * `drop()` removes it once the apps are closed.
 */
export async function sharedDatabase(prefix = 'bw-shared-'): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  if (TEST_ON_PG) {
    const url = await freshPgDatabase()
    return { env: { BULWARK_DATABASE_URL: url }, drop: () => dropPgDatabase(url) }
  }
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { env: { BULWARK_DB_PATH: join(dir, 'db.sqlite') }, drop: async () => rmSync(dir, { recursive: true, force: true }) }
}

/** Asserts the shape of an RFC 9457 problem document and returns it. */
export function expectProblem(res: TestResponse, status: number, code?: string) {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${res.text.slice(0, 300)}`)
  const ct = res.headers.get('content-type') ?? ''
  if (ct !== 'application/problem+json; charset=utf-8') throw new Error(`expected application/problem+json; charset=utf-8, got ${ct}`)
  for (const k of ['type', 'title', 'status', 'detail', 'code', 'requestId']) {
    if (!(k in res.body)) throw new Error(`problem document lacks ${k}: ${res.text}`)
  }
  if (code && res.body.code !== code) throw new Error(`expected code ${code}, got ${res.body.code}`)
  return res.body
}

export const STRONG_PASSWORD = 'correct horse battery staple 42'

let seq = 0
/** A fresh unique email. */
export const uniqueEmail = (prefix = 'user') => `${prefix}${++seq}-${Math.random().toString(36).slice(2, 8)}@example.com`

/** Registers and signs in a user; returns the tokens and the user. */
export async function signUp(a: TestApp, opts: { email?: string; password?: string; name?: string } = {}) {
  const email = opts.email ?? uniqueEmail()
  const password = opts.password ?? STRONG_PASSWORD
  const reg = await a.req('POST', '/v1/auth/register', { body: { email, password, ...(opts.name ? { name: opts.name } : {}) } })
  if (reg.status !== 201) throw new Error(`register failed: ${reg.status} ${reg.text}`)
  const login = await a.req('POST', '/v1/auth/login', { body: { email, password } })
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${login.text}`)
  return { email, password, user: reg.body.user, accessToken: login.body.accessToken as string, refreshToken: login.body.refreshToken as string }
}

/** Mails queued for an address, newest last. */
export async function mailsTo(a: TestApp, to: string): Promise<{ subject: string; text: string }[]> {
  if (a.deps.storage.engine === 'postgres') {
    // Mails of one fake-clock millisecond share created_at; their ids (UUIDv7, monotonic in a process) keep the order.
    return await a.deps.db.select({ subject: mailOutbox.subject, text: mailOutbox.text }).from(mailOutbox).where(eq(mailOutbox.to, to)).orderBy(asc(mailOutbox.createdAt), asc(mailOutbox.id))
  }
  return a.deps.storage.sqlite!.query<{ subject: string; text: string }, [string]>('SELECT subject, text FROM mail_outbox WHERE "to" = ? ORDER BY created_at, rowid').all(to)
}

/** The token in the newest mail to an address whose subject matches. */
export async function tokenFromMail(a: TestApp, to: string, subject: RegExp): Promise<string> {
  const mail = (await mailsTo(a, to)).filter((m) => subject.test(m.subject)).at(-1)
  if (!mail) throw new Error(`no mail to ${to} matching ${subject}`)
  // With a link configured the token is in it (`token=`); without, on its own line after "token:".
  const m = /token=([A-Za-z0-9_-]+)/.exec(mail.text) ?? /token:\s+([A-Za-z0-9_-]+)/.exec(mail.text)
  if (!m) throw new Error('no token in mail')
  return decodeURIComponent(m[1]!)
}

/** Gives an existing user a role directly in the database (test setup only). */
export async function grantRoleDirect(a: TestApp, userId: string, role: string) {
  await sqlExec(a.deps, 'INSERT INTO user_roles (user_id, role_id, created_at) SELECT ?, id, 0 FROM roles WHERE name = ?', [userId, role])
  a.deps.invalidation.emit({ kind: 'user', id: userId })
}
