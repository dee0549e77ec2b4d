/**
 * Retention: the pruner deletes exactly the rows past their retention (by the injected clock), in batches,
 * each batch driven by an index, without holding up requests; settings of 0 keep rows forever.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { Pruner, RETENTION_RULES } from '../../src/modules/retention/service'
import { makeApp, signUp, type TestApp } from '../helpers'
import { onPg, sqlCount, sqlExec, sqlRows } from '../support/sql'

const DAY = 86_400_000
let a: TestApp
afterEach(() => a?.close())

let seq = 0
const id = (p: string) => `${p}-${++seq}`

type Deps = TestApp['deps']

/** Inserts rows of every pruned kind at a given age. */
async function seed(deps: Deps, now: number) {
  const db = { run: (q: string, params: unknown[]) => sqlExec(deps, q, params) }
  const user = id('u')
  await db.run("INSERT INTO users (id, email, created_at, updated_at) VALUES (?, ?, 0, 0)", [user, `${user}@example.com`])
  const session = async (name: string, o: { lastSeen: number; expires: number; revoked?: number }) => {
    await db.run('INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, auth_time, revoked_at) VALUES (?, ?, 0, ?, ?, 0, ?)', [name, user, o.lastSeen, o.expires, o.revoked ?? null])
    return name
  }
  const token = (sessionId: string, used: number | null) => db.run('INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at, used_at) VALUES (?, ?, ?, 0, ?, ?)', [id('rt'), sessionId, id('h'), now + DAY, used])
  const event = (name: string, at: number) => db.run("INSERT INTO security_events (type, outcome, created_at) VALUES (?, 'info', ?)", [name, at])
  const mail = (name: string, status: string, at: number) => db.run("INSERT INTO mail_outbox (id, \"to\", subject, text, status, next_attempt_at, created_at) VALUES (?, 'x@example.com', 's', '', ?, ?, ?)", [name, status, at, at])
  const emailToken = (name: string, expires: number) => db.run("INSERT INTO email_tokens (id, user_id, purpose, token_hash, created_at, expires_at) VALUES (?, ?, 'verify_email', ?, 0, ?)", [name, user, id('h'), expires])
  const challenge = (name: string, expires: number) => db.run("INSERT INTO challenges (id, kind, secret_hash, created_at, expires_at) VALUES (?, 'mfa_login', ?, 0, ?)", [name, id('h'), expires])

  const live = await session('live', { lastSeen: now, expires: now + DAY })
  await token(live, null) // current token of a live session
  await token(live, now - 6 * DAY) // spent 6 days ago: kept (7 days)
  await token(live, now - 8 * DAY) // spent 8 days ago: pruned
  await token(await session('revoked-6d', { lastSeen: now - 6 * DAY, expires: now + DAY, revoked: now - 6 * DAY }), null)
  await token(await session('revoked-8d', { lastSeen: now - 8 * DAY, expires: now + DAY, revoked: now - 8 * DAY }), null)
  await session('expired-8d', { lastSeen: now - 9 * DAY, expires: now - 8 * DAY })
  await session('idle-15d', { lastSeen: now - 15 * DAY, expires: now + DAY }) // idle limit 7 d + retention 7 d
  await session('idle-13d', { lastSeen: now - 13 * DAY, expires: now + DAY })
  await event('ev-364d', now - 364 * DAY)
  await event('ev-366d', now - 366 * DAY)
  await mail('sent-2d', 'sent', now - 2 * DAY)
  await mail('kept-2d', 'kept', now - 2 * DAY)
  await mail('sent-1h', 'sent', now - 3_600_000)
  await mail('pending-2d', 'pending', now - 2 * DAY)
  await mail('failed-2d', 'failed', now - 2 * DAY)
  await emailToken('et-expired-2d', now - 2 * DAY)
  await emailToken('et-expired-1h', now - 3_600_000)
  await challenge('ch-expired-2d', now - 2 * DAY)
  await challenge('ch-live', now + 60_000)
}

const ID_QUERIES = {
  sessions: 'SELECT id FROM sessions ORDER BY id',
  mail: 'SELECT id FROM mail_outbox ORDER BY id',
  email_tokens: 'SELECT id FROM email_tokens ORDER BY id',
  challenges: 'SELECT id FROM challenges ORDER BY id',
  events: "SELECT type AS id FROM security_events WHERE type LIKE 'ev-%' ORDER BY id",
}
const ids = async (deps: Deps, q: keyof typeof ID_QUERIES) => (await sqlRows<{ id: string }>(deps, ID_QUERIES[q])).map((r) => r.id)

// NULL first as SQLite sorts it (PostgreSQL sorts NULL last by default); int8 from PostgreSQL's client is a string.
const tokens = async (deps: Deps) =>
  (await sqlRows<{ session_id: string; used_at: number | string | null }>(deps, 'SELECT session_id, used_at FROM refresh_tokens ORDER BY session_id, used_at', [], 'SELECT session_id, used_at FROM refresh_tokens ORDER BY session_id, used_at NULLS FIRST')).map((r) => ({
    session_id: r.session_id,
    used_at: r.used_at === null ? null : Number(r.used_at),
  }))
const oldEvents = (deps: Deps) => sqlCount(deps, "SELECT count(*) AS n FROM security_events WHERE type = 'old'")

describe('retention', () => {
  test('each kind of row goes once past its retention, and nothing else does', async () => {
    a = await makeApp()
    const db = a.deps
    const now = a.clock.now()
    await seed(db, now)
    const report = await a.deps.pruner.runOnce()
    expect(report.error).toBeUndefined()
    expect(await ids(db, 'sessions')).toEqual(['idle-13d', 'live', 'revoked-6d'])
    expect(await tokens(db)).toEqual([
      { session_id: 'live', used_at: null },
      { session_id: 'live', used_at: now - 6 * DAY },
      { session_id: 'revoked-6d', used_at: null },
    ])
    expect(await ids(db, 'events')).toEqual(['ev-364d'])
    expect(await ids(db, 'mail')).toEqual(['failed-2d', 'pending-2d', 'sent-1h'])
    expect(await ids(db, 'email_tokens')).toEqual(['et-expired-1h'])
    expect(await ids(db, 'challenges')).toEqual(['ch-live'])
    expect(report.deleted).toMatchObject({ refresh_tokens_spent: 1, sessions_revoked: 1, sessions_expired: 1, sessions_idle: 1, security_events: 1, mail_outbox_done: 2, email_tokens_expired: 1, challenges_expired: 1 })

    // time passes (the injected clock): what was young enough is now old enough
    a.clock.advance(2 * DAY)
    await a.deps.pruner.runOnce()
    expect(await ids(db, 'sessions')).toEqual(['live'])
    expect(await ids(db, 'events')).toEqual([])
    expect(await ids(db, 'mail')).toEqual(['failed-2d', 'pending-2d'])
    expect(await tokens(db)).toEqual([{ session_id: 'live', used_at: null }])
  })

  test("a spent refresh token's successor copy serves a retry within the grace, and the pruner clears it after", async () => {
    a = await makeApp()
    const u = await signUp(a)
    const first = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: u.refreshToken } })
    expect(first.status).toBe(200)
    const copies = async () => (await sqlRows<{ n: number | string }>(a.deps, 'SELECT count(*) AS n FROM refresh_tokens WHERE successor_enc IS NOT NULL'))[0]!.n
    expect(Number(await copies())).toBe(1)
    // Within the grace the pruner leaves it, and a retry of the spent token gets the same successor.
    expect((await a.deps.pruner.runOnce()).deleted.refresh_tokens_successor_copies).toBeUndefined()
    a.clock.advance(a.deps.config.session.refreshReuseGraceMs - 1000)
    const retry = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: u.refreshToken } })
    expect(retry.status).toBe(200)
    expect(retry.body.refreshToken).toBe(first.body.refreshToken)
    a.clock.advance(2000)
    expect((await a.deps.pruner.runOnce()).deleted.refresh_tokens_successor_copies).toBe(1)
    expect(Number(await copies())).toBe(0)
    // The successor itself is untouched and still spends; the old token is now reuse.
    const next = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: first.body.refreshToken } })
    expect(next.status).toBe(200)
    expect(Number(await copies())).toBe(1)
    a.clock.advance(a.deps.config.session.refreshReuseGraceMs + 1000)
    expect((await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: u.refreshToken } })).status).toBe(401)
  })

  test('a retention of 0 keeps rows forever', async () => {
    a = await makeApp({ BULWARK_RETENTION_SECURITY_EVENTS: '0', BULWARK_RETENTION_SESSIONS: '0', BULWARK_RETENTION_MAIL: '0', BULWARK_RETENTION_TOKENS: '0' })
    await seed(a.deps, a.clock.now())
    a.clock.advance(3650 * DAY)
    const report = await a.deps.pruner.runOnce()
    expect(report.deleted).toEqual({})
    // Only the successor-copy rule ran (it is hygiene, not retention): one batch, nothing to clear.
    expect(report.batches).toBe(1)
    expect(await ids(a.deps, 'sessions')).toHaveLength(6)
  })

  test('large backlogs go in batches, and requests are answered between batches', async () => {
    a = await makeApp()
    const db = a.deps.storage.sqlite
    const old = a.clock.now() - 400 * DAY
    for (let i = 0; i < 50; i++) await sqlExec(a.deps, "INSERT INTO security_events (type, outcome, created_at) VALUES ('old', 'info', ?)", [old])
    const pruner = new Pruner(a.deps, { batch: 5 })
    const order: string[] = []
    const round = pruner.runOnce().then((r) => {
      order.push('pruned')
      return r
    })
    const live = a.req('GET', '/health/live').then((r) => {
      // answered while old rows were still there: the round had not finished (SQLite: counted at that very moment;
      // a PostgreSQL count would be a later round trip, so there the order alone says it)
      order.push(db ? `live ${r.status} with ${db.query<{ n: number }, []>("SELECT count(*) AS n FROM security_events WHERE type = 'old'").get()!.n} left` : `live ${r.status}`)
    })
    const [report] = await Promise.all([round, live])
    expect(report.deleted.security_events).toBe(50)
    expect(report.batches).toBeGreaterThanOrEqual(11)
    expect(order[0]).toMatch(db ? /^live 200 with [1-9]\d* left$/ : /^live 200$/)
    expect(order[1]).toBe('pruned')
  })

  test.skipIf(onPg)('every batch statement is driven by an index (EXPLAIN QUERY PLAN; SQLite only: its planner and prepared batches)', async () => {
    a = await makeApp()
    const db = a.deps.storage.sqlite!
    for (const rule of RETENTION_RULES) {
      const sqlText = rule.prepare(db).toString()
      const plan = db.query<{ detail: string }, [number, number]>(`EXPLAIN QUERY PLAN ${sqlText}`).all(0, 500).map((r) => r.detail)
      const scans = plan.filter((d) => /^SCAN /.test(d))
      expect(scans, `${rule.name}: ${plan.join(' | ')}`).toEqual([])
      expect(plan.some((d) => /USING (COVERING )?INDEX \w+/.test(d)), `${rule.name}: ${plan.join(' | ')}`).toBe(true)
    }
  })

  test('start() runs a first round at once; stop() waits for it', async () => {
    a = await makeApp()
    const old = a.clock.now() - 400 * DAY
    await sqlExec(a.deps, "INSERT INTO security_events (type, outcome, created_at) VALUES ('old', 'info', ?)", [old])
    a.deps.pruner.start()
    // the first round runs at start
    for (let i = 0; i < 100 && (await oldEvents(a.deps)) > 0; i++) await Bun.sleep(5)
    expect(await oldEvents(a.deps)).toBe(0)
    await a.deps.pruner.stop()
  })
})
