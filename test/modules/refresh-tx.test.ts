/**
 * A refresh is one transaction: spending the token, issuing the next, touching the session and the `refresh`
 * security event commit together (one commit), and a session ended while the refresh was under way refuses it.
 * A sign-in writes its session, first refresh token and `login` event in one transaction too.
 * Runs on both engines (test/pg-files.txt); the commit count reads the SQLite connection.
 */
import { afterEach, expect, test } from 'bun:test'
import { TEST_ON_PG } from '../support/pg-apps'
import { expectProblem, makeApp, signUp, type TestApp } from '../helpers'

let a: TestApp
afterEach(() => a?.close())

/** Runs DDL for a test on whichever engine the app uses. */
async function ddl(sqliteText: string, pgText: string): Promise<void> {
  if (a.deps.storage.pg) await a.deps.storage.pg.unsafe(pgText)
  else a.deps.storage.sqlite!.run(sqliteText)
}

async function spentTokens(): Promise<number> {
  const q = 'SELECT count(*) AS n FROM refresh_tokens WHERE used_at IS NOT NULL'
  if (a.deps.storage.pg) return Number(((await a.deps.storage.pg.unsafe(q)) as { n: number }[])[0]!.n)
  return a.deps.storage.sqlite!.query<{ n: number }, []>(q).get()!.n
}

/** Counts COMMITs on the SQLite connection while `fn` runs. */
async function commitsDuring(fn: () => Promise<unknown>): Promise<number> {
  const sqlite = a.deps.storage.sqlite!
  const run = sqlite.run.bind(sqlite)
  let commits = 0
  sqlite.run = ((q: string, ...rest: unknown[]) => {
    if (/^\s*COMMIT/i.test(q)) commits++
    return run(q as never, ...(rest as never[]))
  }) as typeof sqlite.run
  try {
    await fn()
  } finally {
    sqlite.run = run
  }
  return commits
}

/**
 * PostgreSQL: runs `write` on another connection and holds its transaction open while a refresh is started, until
 * the refresh waits on that transaction's row lock (an ungranted lock on the holder's transaction id); then
 * commits it. Returns the refresh's response and whether it was seen blocked.
 */
async function refreshBlockedBy(write: string, refreshToken: string): Promise<{ blocked: number; response: Awaited<ReturnType<TestApp['req']>> }> {
  const pg = a.deps.storage.pg!
  let commit!: () => void
  const holding = new Promise<void>((r) => (commit = r))
  let locked!: () => void
  const isLocked = new Promise<void>((r) => (locked = r))
  const holder = pg.begin(async (tx) => {
    await tx.unsafe(write)
    locked()
    await holding
  })
  await isLocked
  const refreshing = a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
  const waiting = async () =>
    Number(((await pg.unsafe('SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())')) as { n: unknown }[])[0]!.n)
  let blocked = 0
  try {
    for (let i = 0; i < 500 && blocked === 0; i++) {
      blocked = await waiting()
      if (blocked === 0) await Bun.sleep(10)
    }
  } finally {
    commit()
    await holder
  }
  return { blocked, response: await refreshing }
}

test.skipIf(TEST_ON_PG)('a refresh commits once, its refresh event included (SQLite only: counts COMMITs on the SQLite connection)', async () => {
  a = await makeApp()
  const { refreshToken, user } = await signUp(a)
  let status = 0
  expect(await commitsDuring(async () => (status = (await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })).status))).toBe(1)
  expect(status).toBe(200)
  const events = await a.deps.audit.list({ type: 'refresh', limit: 5 })
  expect(events.map((e) => [e.actorId, e.targetId])).toEqual([[user.id, user.id]])
})

test.skipIf(TEST_ON_PG)('a password sign-in commits once, its login event included (SQLite only: counts COMMITs on the SQLite connection)', async () => {
  a = await makeApp()
  const { email, password, user } = await signUp(a)
  let status = 0
  expect(await commitsDuring(async () => (status = (await a.req('POST', '/v1/auth/login', { body: { email, password } })).status))).toBe(1)
  expect(status).toBe(200)
  const [last] = await a.deps.audit.list({ type: 'login', limit: 1 })
  expect(last).toMatchObject({ actorId: user.id, targetId: user.id, details: { amr: ['pwd'], transport: 'bearer' } })
  const sessionId = String(last!.details!.sessionId)
  expect(a.deps.storage.sqlite!.query<{ n: number }, [string]>('SELECT count(*) AS n FROM sessions WHERE id = ?').get(sessionId)!.n).toBe(1)
})

test('an event that cannot be written does not fail the refresh (logged, like any audit failure)', async () => {
  a = await makeApp()
  const { refreshToken } = await signUp(a)
  await ddl(
    "CREATE TRIGGER no_refresh_events BEFORE INSERT ON security_events WHEN NEW.type = 'refresh' BEGIN SELECT RAISE(ABORT, 'audit table refuses'); END",
    `CREATE FUNCTION no_refresh_events() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit table refuses'; END $$ LANGUAGE plpgsql;
     CREATE TRIGGER no_refresh_events BEFORE INSERT ON security_events FOR EACH ROW WHEN (NEW.type = 'refresh') EXECUTE FUNCTION no_refresh_events();`,
  )
  const r = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
  expect(r.status).toBe(200)
  expect(a.logs.some((l) => l.msg === 'could not record security event' && l.event === 'refresh')).toBe(true)
  await ddl('DROP TRIGGER no_refresh_events', 'DROP TRIGGER no_refresh_events ON security_events')
  // The rotation itself committed: the old token is spent (a retry within the grace gets the same successor), the new one works.
  expect(await spentTokens()).toBe(1)
  expect((await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })).body.refreshToken).toBe(r.body.refreshToken)
  expect((await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: r.body.refreshToken } })).status).toBe(200)
})

test('a session ended after the token was looked up refuses the refresh, and the token is not spent', async () => {
  a = await makeApp()
  const { refreshToken } = await signUp(a)
  const pg = a.deps.storage.pg
  if (!pg) {
    // SQLite: a logout committed between the lookup and the rotation's writes, standing in as a trigger that
    // lands when the token is spent (the session is touched by the next statement).
    await ddl("CREATE TRIGGER revoke_meanwhile AFTER UPDATE OF used_at ON refresh_tokens BEGIN UPDATE sessions SET revoked_at = 1, revoked_reason = 'logout' WHERE id = NEW.session_id; END", '')
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } }), 401, 'invalid_refresh_token')
    await ddl('DROP TRIGGER revoke_meanwhile', '')
    // Everything of the refused refresh was rolled back, the trigger's revocation with it.
    expect(await spentTokens()).toBe(0)
    expect((await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })).status).toBe(200)
    return
  }
  // PostgreSQL (the three writes are one statement): a real logout on another connection, holding the session's
  // row lock while the refresh runs. The refresh is seen waiting on that lock, so its lookup before it saw a live
  // session; its write waits for the lock, then finds the session revoked.
  const { blocked, response } = await refreshBlockedBy("UPDATE sessions SET revoked_at = 1, revoked_reason = 'logout'", refreshToken)
  expect(blocked).toBeGreaterThan(0)
  expectProblem(response, 401, 'invalid_refresh_token')
  // Nothing of the refused refresh was kept: the token is not spent, no successor was inserted.
  expect(await spentTokens()).toBe(0)
  expect(Number(((await pg.unsafe('SELECT count(*) AS n FROM refresh_tokens')) as { n: unknown }[])[0]!.n)).toBe(1)
})

test.skipIf(!TEST_ON_PG)('PostgreSQL: a refresh that lost the race for its token (spent meanwhile on another connection) keeps no refresh event', async () => {
  a = await makeApp()
  const { refreshToken } = await signUp(a)
  // Another connection spends the token (as another instance would) and holds the row's lock while the refresh runs:
  // the refresh's lookup sees it unspent, its conditional write waits, then changes nothing.
  const { blocked, response } = await refreshBlockedBy(`UPDATE refresh_tokens SET used_at = ${Date.now()} WHERE used_at IS NULL`, refreshToken)
  expect(blocked).toBeGreaterThan(0)
  // Spent elsewhere with no successor to hand out: the retry treats it as reuse.
  expectProblem(response, 401, 'invalid_refresh_token')
  expect(await a.deps.audit.list({ type: 'refresh', limit: 5 })).toEqual([])
  expect((await a.deps.audit.list({ type: 'refresh_token_reuse', limit: 5 })).length).toBe(1)
  expect(a.logs.some((l) => l.msg === 'could not record security event')).toBe(false)
  expect((await a.deps.audit.verify()).intact).toBe(true)
})
