import { afterEach, describe, expect, test } from 'bun:test'
import { Writable } from 'node:stream'
import { buildDeps, type AppDeps } from '../../src/app'
import { testConfig } from '../../src/config'
import { emailTokens, users } from '../../src/db/tables'
import { FakeClock } from '../../src/lib/clock'
import { hashToken } from '../../src/lib/crypto'
import { newId } from '../../src/lib/ids'
import { createLogger } from '../../src/lib/logger'
import { QUIET_MS } from '../../src/modules/lockout/service'
import { sharedDatabase } from '../helpers'
import { SQL } from 'bun'
import { TEST_ON_PG, testDatabaseEnv } from '../support/pg-apps'

const MIN = 60_000
const opened: AppDeps[] = []
/** Databases to remove after the test (SQLite folders, PostgreSQL databases), once its apps are closed. */
const drops: (() => Promise<void>)[] = []

afterEach(async () => {
  for (const d of opened.splice(0)) await d.close()
  for (const drop of drops.splice(0)) await drop()
})

async function setup(env: Record<string, string> = {}, clock = new FakeClock()) {
  const sink = new Writable({ write: (_c, _e, cb) => cb() })
  // BULWARK_TEST_DB=postgres: a fresh PostgreSQL database, like makeApp().
  const db = await testDatabaseEnv(env)
  drops.push(db.drop)
  const deps = await buildDeps(testConfig(db.env), { clock, logger: createLogger('silent', sink) })
  opened.push(deps)
  return { deps, clock, lockout: deps.lockout }
}

async function addUser(deps: AppDeps, email = 'alice@example.com'): Promise<string> {
  const id = newId()
  const now = deps.clock.now()
  await deps.db.insert(users).values({ id, email, createdAt: now, updatedAt: now })
  return id
}

/** A database two apps open in turn or together (a SQLite file; a PostgreSQL database). */
async function shared(): Promise<Record<string, string>> {
  const { env, drop } = await sharedDatabase('bulwark-lockout-')
  drops.push(drop)
  return env
}

describe('lockout', () => {
  test('locks after the threshold of failures within the window', async () => {
    const { deps, lockout } = await setup()
    const u = await addUser(deps)
    for (let i = 1; i <= 4; i++) {
      const r = await lockout.recordFailure(u)
      expect(r.locked).toBe(false)
      expect(r.failures).toBe(i)
    }
    const r = await lockout.recordFailure(u, 'password', { ip: '192.0.2.1' })
    expect(await r).toEqual({ locked: true, until: deps.clock.now() + MIN, permanent: false, lockCount: 1, failures: 0 })
    expect(await lockout.isLocked(u)).toEqual({ locked: true, until: deps.clock.now() + MIN })
    const events = await deps.audit.list({ type: 'account_locked', limit: 10 })
    expect(events.length).toBe(1)
    expect(events[0]!.details).toEqual({ kind: 'password', level: 1, durationMs: MIN, permanent: false })
    expect(events[0]!.targetId).toBe(u)
    expect(events[0]!.ip).toBe('192.0.2.1')
  })

  test('failures outside the window do not add up', async () => {
    const { deps, clock, lockout } = await setup()
    const u = await addUser(deps)
    for (let i = 0; i < 4; i++) await lockout.recordFailure(u)
    clock.advance(15 * MIN)
    expect(await lockout.recordFailure(u)).toMatchObject({ locked: false, failures: 1 })
  })

  test('the lock expires and escalates: 1m, 2m, 4m … capped at the maximum', async () => {
    const { deps, clock, lockout } = await setup({ BULWARK_LOCKOUT_MAX: '5m' })
    const u = await addUser(deps)
    const durations: number[] = []
    for (let round = 0; round < 5; round++) {
      let r = await lockout.recordFailure(u)
      for (let i = 1; i < 5; i++) r = await lockout.recordFailure(u)
      expect(r.locked).toBe(true)
      durations.push(r.until! - clock.now())
      clock.advance(r.until! - clock.now() - 1)
      expect((await lockout.isLocked(u)).locked).toBe(true)
      clock.advance(1)
      expect((await lockout.isLocked(u)).locked).toBe(false)
    }
    expect(durations).toEqual([1, 2, 4, 5, 5].map((m) => m * MIN))
  })

  test('failures while locked do not extend the lock', async () => {
    const { deps, lockout } = await setup()
    const u = await addUser(deps)
    for (let i = 0; i < 5; i++) await lockout.recordFailure(u)
    const until = (await lockout.isLocked(u)).until
    const again = await lockout.recordFailure(u)
    expect(again.locked).toBe(true)
    expect(again.until).toBe(until)
    expect(again.lockCount).toBe(1)
  })

  test('success resets failures but keeps the escalation until a quiet day', async () => {
    const { deps, clock, lockout } = await setup()
    const u = await addUser(deps)
    for (let i = 0; i < 5; i++) await lockout.recordFailure(u)
    clock.advance(MIN)
    for (let i = 0; i < 4; i++) await lockout.recordFailure(u)
    await lockout.recordSuccess(u)
    for (let i = 0; i < 4; i++) expect((await lockout.recordFailure(u)).locked).toBe(false)
    const second = await lockout.recordFailure(u)
    expect(second.lockCount).toBe(2)
    expect(second.until! - clock.now()).toBe(2 * MIN)
    clock.advance(2 * MIN + QUIET_MS)
    await lockout.recordSuccess(u)
    let r = await lockout.recordFailure(u)
    for (let i = 1; i < 5; i++) r = await lockout.recordFailure(u)
    expect(r.lockCount).toBe(1)
    expect(r.until! - clock.now()).toBe(MIN)
  })

  test('permanent after N temporary locks, until unlocked', async () => {
    const { deps, clock, lockout } = await setup({ BULWARK_LOCKOUT_PERMANENT_AFTER: '2' })
    const u = await addUser(deps)
    const lockOnce = async () => {
      let r = await lockout.recordFailure(u)
      for (let i = 1; i < 5; i++) r = await lockout.recordFailure(u)
      return r
    }
    expect((await lockOnce()).permanent).toBe(false)
    clock.advance(MIN)
    expect((await lockOnce()).permanent).toBe(false)
    clock.advance(2 * MIN)
    const third = await lockOnce()
    expect(third).toMatchObject({ locked: true, permanent: true, lockCount: 3 })
    expect(third.until).toBeUndefined()
    clock.advance(365 * 24 * 60 * MIN)
    expect(await lockout.isLocked(u)).toEqual({ locked: true, permanent: true })
    await lockout.unlock(u, 'reset')
    expect(await lockout.isLocked(u)).toEqual({ locked: false })
  })

  test('kinds are independent', async () => {
    const { deps, lockout } = await setup()
    const u = await addUser(deps)
    for (let i = 0; i < 5; i++) await lockout.recordFailure(u, 'mfa')
    expect((await lockout.isLocked(u, 'mfa')).locked).toBe(true)
    expect((await lockout.isLocked(u, 'password')).locked).toBe(false)
  })

  test('unlock clears everything and records who did it', async () => {
    const { deps, lockout } = await setup()
    const u = await addUser(deps)
    const admin = await addUser(deps, 'admin@example.com')
    for (let i = 0; i < 5; i++) await lockout.recordFailure(u)
    for (let i = 0; i < 5; i++) await lockout.recordFailure(u, 'mfa')
    await lockout.unlock(u, admin)
    expect((await lockout.isLocked(u)).locked).toBe(false)
    expect((await lockout.isLocked(u, 'mfa')).locked).toBe(false)
    // the escalation is gone too: the next lock is the first again
    let r = await lockout.recordFailure(u)
    for (let i = 1; i < 5; i++) r = await lockout.recordFailure(u)
    expect(r.lockCount).toBe(1)
    const ev = (await deps.audit.list({ type: 'account_unlocked', limit: 5 }))[0]!
    expect(ev).toMatchObject({ actorId: admin, targetId: u, details: { by: 'admin' } })
  })

  test('unlock tokens: single use, stored hashed, expire after 24 h, the latest one only', async () => {
    const { deps, clock, lockout } = await setup()
    const u = await addUser(deps)
    for (let i = 0; i < 5; i++) await lockout.recordFailure(u)
    const old = await lockout.issueUnlockToken(u)
    const token = await lockout.issueUnlockToken(u)
    const stored = await deps.db.select().from(emailTokens)
    expect(stored.length).toBe(1)
    expect(stored[0]!.tokenHash).toBe(hashToken(deps.keys.tokenHash, token))
    expect(JSON.stringify(stored)).not.toContain(token)
    expect(await lockout.consumeUnlockToken(old)).toBeUndefined()
    expect(await lockout.unlockWithToken(token)).toBe(true)
    expect((await lockout.isLocked(u)).locked).toBe(false)
    expect(await lockout.consumeUnlockToken(token)).toBeUndefined()
    expect((await deps.audit.list({ type: 'account_unlocked', limit: 5 }))[0]!.details).toEqual({ by: 'link' })

    const late = await lockout.issueUnlockToken(u)
    clock.advance(24 * 60 * MIN)
    expect(await lockout.consumeUnlockToken(late)).toBeUndefined()
    expect(await lockout.consumeUnlockToken('short')).toBeUndefined()
    expect(await lockout.consumeUnlockToken('x'.repeat(43))).toBeUndefined()
  })

  test('state survives a restart (two apps on one database)', async () => {
    const env = await shared()
    const clock = new FakeClock()
    const first = await setup(env, clock)
    const u = await addUser(first.deps)
    for (let i = 0; i < 5; i++) await first.lockout.recordFailure(u)
    for (let i = 0; i < 3; i++) await first.lockout.recordFailure(u, 'mfa')
    const until = (await first.lockout.isLocked(u)).until
    await first.deps.close()
    opened.splice(opened.indexOf(await first.deps), 1)

    const second = await setup(env, clock)
    expect(await second.lockout.isLocked(u)).toEqual({ locked: true, until })
    clock.advance(MIN)
    expect((await second.lockout.isLocked(u)).locked).toBe(false)
    // the mfa failures carried over too: two more lock it
    await second.lockout.recordFailure(u, 'mfa')
    expect((await second.lockout.recordFailure(u, 'mfa')).locked).toBe(true)
  })

  test('a lock written by another instance counts at once for this one (mutations read the database)', async () => {
    const env = await shared()
    const clock = new FakeClock()
    const a = await setup(env, clock)
    const b = await setup(env, clock)
    const u = await addUser(a.deps)
    expect((await b.lockout.isLocked(u)).locked).toBe(false)
    for (let i = 0; i < 5; i++) await a.lockout.recordFailure(u)
    expect((await b.lockout.recordFailure(u)).locked).toBe(true)
    expect((await b.lockout.isLocked(u)).locked).toBe(true)
  })

  test('a success never overwrites a lock another writer holding the account commits meanwhile', async () => {
    const env = await shared()
    const clock = new FakeClock()
    const a = await setup(env, clock)
    const u = await addUser(a.deps)
    for (let i = 0; i < 4; i++) await a.lockout.recordFailure(u) // a's copy has failures to clear: the success reads the table
    const until = clock.now() + 10 * MIN
    // Another instance's failure that locks, holding the row's lock while the success starts.
    let commit: () => Promise<void>
    if (TEST_ON_PG) {
      const sql = new SQL(env.BULWARK_DATABASE_URL!)
      const conn = await sql.reserve()
      await conn`BEGIN`
      await conn`SELECT pg_advisory_xact_lock(hashtext(${`lockout:${u}:password`}))`
      await conn`UPDATE lockouts SET failures = 0, lock_count = 1, locked_until = ${until} WHERE user_id = ${u} AND kind = 'password'`
      commit = async () => {
        await conn`COMMIT`
        conn.release()
        await sql.close()
      }
    } else {
      // bun:sqlite waits for a lock on the calling thread, so the other writer is another process; it commits 300 ms after taking the lock.
      const script = `const { Database } = require('bun:sqlite'); const db = new Database(process.argv[1]); db.run('BEGIN IMMEDIATE');
        db.run("UPDATE lockouts SET failures = 0, lock_count = 1, locked_until = ? WHERE user_id = ? AND kind = 'password'", [Number(process.argv[2]), process.argv[3]]);
        console.log('held'); await Bun.sleep(300); db.run('COMMIT'); db.close()`
      const child = Bun.spawn([process.execPath, '-e', script, env.BULWARK_DB_PATH!, String(until), u], { stdout: 'pipe' })
      const reader = child.stdout.getReader()
      expect(new TextDecoder().decode((await reader.read()).value)).toStartWith('held')
      commit = async () => void (await child.exited)
    }
    const success = a.lockout.recordSuccess(u)
    if (TEST_ON_PG) await Bun.sleep(100)
    await commit()
    await success
    await a.lockout.forget(u)
    expect(await a.lockout.isLocked(u)).toEqual({ locked: true, until })
  })

  test('a success with a clean cached copy makes no query: failures counted elsewhere, unheard of, stay counted until the copy is dropped', async () => {
    const env = await shared()
    const clock = new FakeClock()
    const a = await setup(env, clock)
    const b = await setup(env, clock)
    const u = await addUser(a.deps)
    expect((await a.lockout.isLocked(u)).locked).toBe(false) // a keeps "no row"
    for (let i = 0; i < 4; i++) await b.lockout.recordFailure(u)
    await a.lockout.recordSuccess(u) // nothing to clear in a's copy: the table is not read
    expect((await b.lockout.recordFailure(u)).locked).toBe(true) // the four stayed counted: the fifth locks

    // Heard of (what the invalidation relay carries): a's success reads the table and clears the count.
    const v = await addUser(a.deps, 'bob@example.com')
    expect((await a.lockout.isLocked(v)).locked).toBe(false)
    for (let i = 0; i < 4; i++) await b.lockout.recordFailure(v)
    a.deps.invalidation.emit({ kind: 'lockout', id: v })
    await a.lockout.recordSuccess(v)
    expect((await b.lockout.recordFailure(v)).locked).toBe(false)
    // This instance's own failures are in its copy, which a success then clears.
    for (let i = 0; i < 3; i++) await a.lockout.recordFailure(v)
    await a.lockout.recordSuccess(v)
    for (let i = 0; i < 4; i++) expect((await a.lockout.recordFailure(v)).locked).toBe(false)
  })
})
