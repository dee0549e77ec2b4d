/**
 * Retention: the pruner deletes exactly the rows past their retention (by the injected clock), in batches,
 * each batch driven by an index, without holding up requests; settings of 0 keep rows forever.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import type { Database } from 'bun:sqlite'
import { Pruner, RETENTION_RULES } from '../../src/modules/retention/service'
import { makeApp, type TestApp } from '../helpers'

const DAY = 86_400_000
let a: TestApp
afterEach(() => a?.close())

let seq = 0
const id = (p: string) => `${p}-${++seq}`

/** Inserts rows of every pruned kind at a given age. */
function seed(db: Database, now: number) {
  const user = id('u')
  db.run("INSERT INTO users (id, email, created_at, updated_at) VALUES (?, ?, 0, 0)", [user, `${user}@example.com`])
  const session = (name: string, o: { lastSeen: number; expires: number; revoked?: number }) => {
    db.run('INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, auth_time, revoked_at) VALUES (?, ?, 0, ?, ?, 0, ?)', [name, user, o.lastSeen, o.expires, o.revoked ?? null])
    return name
  }
  const token = (sessionId: string, used: number | null) => db.run('INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at, used_at) VALUES (?, ?, ?, 0, ?, ?)', [id('rt'), sessionId, id('h'), now + DAY, used])
  const event = (name: string, at: number) => db.run("INSERT INTO security_events (type, outcome, created_at) VALUES (?, 'info', ?)", [name, at])
  const mail = (name: string, status: string, at: number) => db.run("INSERT INTO mail_outbox (id, \"to\", subject, text, status, next_attempt_at, created_at) VALUES (?, 'x@example.com', 's', '', ?, ?, ?)", [name, status, at, at])
  const emailToken = (name: string, expires: number) => db.run("INSERT INTO email_tokens (id, user_id, purpose, token_hash, created_at, expires_at) VALUES (?, ?, 'verify_email', ?, 0, ?)", [name, user, id('h'), expires])
  const challenge = (name: string, expires: number) => db.run("INSERT INTO challenges (id, kind, secret_hash, created_at, expires_at) VALUES (?, 'mfa_login', ?, 0, ?)", [name, id('h'), expires])

  const live = session('live', { lastSeen: now, expires: now + DAY })
  token(live, null) // current token of a live session
  token(live, now - 6 * DAY) // spent 6 days ago: kept (7 days)
  token(live, now - 8 * DAY) // spent 8 days ago: pruned
  token(session('revoked-6d', { lastSeen: now - 6 * DAY, expires: now + DAY, revoked: now - 6 * DAY }), null)
  token(session('revoked-8d', { lastSeen: now - 8 * DAY, expires: now + DAY, revoked: now - 8 * DAY }), null)
  session('expired-8d', { lastSeen: now - 9 * DAY, expires: now - 8 * DAY })
  session('idle-15d', { lastSeen: now - 15 * DAY, expires: now + DAY }) // idle limit 7 d + retention 7 d
  session('idle-13d', { lastSeen: now - 13 * DAY, expires: now + DAY })
  event('ev-364d', now - 364 * DAY)
  event('ev-366d', now - 366 * DAY)
  mail('sent-2d', 'sent', now - 2 * DAY)
  mail('kept-2d', 'kept', now - 2 * DAY)
  mail('sent-1h', 'sent', now - 3_600_000)
  mail('pending-2d', 'pending', now - 2 * DAY)
  mail('failed-2d', 'failed', now - 2 * DAY)
  emailToken('et-expired-2d', now - 2 * DAY)
  emailToken('et-expired-1h', now - 3_600_000)
  challenge('ch-expired-2d', now - 2 * DAY)
  challenge('ch-live', now + 60_000)
}

const ids = (db: Database, q: 'sessions' | 'mail' | 'email_tokens' | 'challenges' | 'events') =>
  ({
    sessions: () => db.query<{ id: string }, []>('SELECT id FROM sessions ORDER BY id').all(),
    mail: () => db.query<{ id: string }, []>('SELECT id FROM mail_outbox ORDER BY id').all(),
    email_tokens: () => db.query<{ id: string }, []>('SELECT id FROM email_tokens ORDER BY id').all(),
    challenges: () => db.query<{ id: string }, []>('SELECT id FROM challenges ORDER BY id').all(),
    events: () => db.query<{ id: string }, []>('SELECT type AS id FROM security_events WHERE type LIKE \'ev-%\' ORDER BY id').all(),
  })[q]().map((r) => r.id)

const tokens = (db: Database) => db.query<{ session_id: string; used_at: number | null }, []>('SELECT session_id, used_at FROM refresh_tokens ORDER BY session_id, used_at').all()

describe('retention', () => {
  test('each kind of row goes once past its retention, and nothing else does', async () => {
    a = await makeApp()
    const db = a.deps.storage.sqlite!
    const now = a.clock.now()
    seed(db, now)
    const report = await a.deps.pruner.runOnce()
    expect(report.error).toBeUndefined()
    expect(ids(db, 'sessions')).toEqual(['idle-13d', 'live', 'revoked-6d'])
    expect(tokens(db)).toEqual([
      { session_id: 'live', used_at: null },
      { session_id: 'live', used_at: now - 6 * DAY },
      { session_id: 'revoked-6d', used_at: null },
    ])
    expect(ids(db, 'events')).toEqual(['ev-364d'])
    expect(ids(db, 'mail')).toEqual(['failed-2d', 'pending-2d', 'sent-1h'])
    expect(ids(db, 'email_tokens')).toEqual(['et-expired-1h'])
    expect(ids(db, 'challenges')).toEqual(['ch-live'])
    expect(report.deleted).toMatchObject({ refresh_tokens_spent: 1, sessions_revoked: 1, sessions_expired: 1, sessions_idle: 1, security_events: 1, mail_outbox_done: 2, email_tokens_expired: 1, challenges_expired: 1 })

    // time passes (the injected clock): what was young enough is now old enough
    a.clock.advance(2 * DAY)
    await a.deps.pruner.runOnce()
    expect(ids(db, 'sessions')).toEqual(['live'])
    expect(ids(db, 'events')).toEqual([])
    expect(ids(db, 'mail')).toEqual(['failed-2d', 'pending-2d'])
    expect(tokens(db)).toEqual([{ session_id: 'live', used_at: null }])
  })

  test('a retention of 0 keeps rows forever', async () => {
    a = await makeApp({ BULWARK_RETENTION_SECURITY_EVENTS: '0', BULWARK_RETENTION_SESSIONS: '0', BULWARK_RETENTION_MAIL: '0', BULWARK_RETENTION_TOKENS: '0' })
    seed(a.deps.storage.sqlite!, a.clock.now())
    a.clock.advance(3650 * DAY)
    const report = await a.deps.pruner.runOnce()
    expect(report.deleted).toEqual({})
    expect(report.batches).toBe(0)
    expect(ids(a.deps.storage.sqlite!, 'sessions')).toHaveLength(6)
  })

  test('large backlogs go in batches, and requests are answered between batches', async () => {
    a = await makeApp()
    const db = a.deps.storage.sqlite!
    const old = a.clock.now() - 400 * DAY
    db.transaction(() => {
      for (let i = 0; i < 50; i++) db.run("INSERT INTO security_events (type, outcome, created_at) VALUES ('old', 'info', ?)", [old])
    })()
    const pruner = new Pruner(a.deps, { batch: 5 })
    const order: string[] = []
    const round = pruner.runOnce().then((r) => {
      order.push('pruned')
      return r
    })
    const live = a.req('GET', '/health/live').then((r) => {
      // answered while old rows were still there: the round had not finished
      order.push(`live ${r.status} with ${db.query<{ n: number }, []>("SELECT count(*) AS n FROM security_events WHERE type = 'old'").get()!.n} left`)
    })
    const [report] = await Promise.all([round, live])
    expect(report.deleted.security_events).toBe(50)
    expect(report.batches).toBeGreaterThanOrEqual(11)
    expect(order[0]).toMatch(/^live 200 with [1-9]\d* left$/)
    expect(order[1]).toBe('pruned')
  })

  test('every batch statement is driven by an index (EXPLAIN QUERY PLAN)', async () => {
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
    a.deps.storage.sqlite!.run("INSERT INTO security_events (type, outcome, created_at) VALUES ('old', 'info', ?)", [old])
    a.deps.pruner.start()
    // the first round runs at start
    for (let i = 0; i < 100 && a.deps.storage.sqlite!.query<{ n: number }, []>("SELECT count(*) AS n FROM security_events WHERE type = 'old'").get()!.n > 0; i++) await Bun.sleep(5)
    expect(a.deps.storage.sqlite!.query<{ n: number }, []>("SELECT count(*) AS n FROM security_events WHERE type = 'old'").get()!.n).toBe(0)
    await a.deps.pruner.stop()
  })
})
