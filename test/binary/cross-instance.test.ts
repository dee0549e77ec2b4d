/**
 * The concurrency guarantees across instances: two compiled binaries share ONE database (a SQLite file
 * through BULWARK_DB_PATH; PostgreSQL through BULWARK_DATABASE_URL once the binary serves on it) with the
 * same BULWARK_SECRET and BULWARK_PUBLIC_URL, and every round fires its parallel requests split between
 * the two (even attempts to A, odd to B). Each guarantee is checked from the answers AND the database rows,
 * over several rounds, so a lost update or a check-then-act race shows up as a wrong count:
 *  - a unique email is registered once (one 201, the rest 409, one row);
 *  - a refresh token is spent once: parallel refreshes all get the same successor (the documented grace
 *    answer), one successor row, the session never forks; an old token presented later ends the family;
 *  - a TOTP step is accepted once (one 200 among parallel verifications of the same code);
 *  - lockout counters are not lost (N parallel wrong passwords leave failures = N; the lock engages once);
 *  - the last owner cannot be removed by two actors at once: two actors above `owner` (a seeded role, as no
 *    API makes one) on the two instances each remove a different one of the last two owners; exactly one
 *    stays. Two owners cannot demote each other at all (403), which the first owner relies on.
 * A last describe checks the SQLite busy handling those guarantees lean on: a write refused by another
 * process's write lock waits for it (BULWARK_DB_BUSY_RETRY) instead of answering 503 at once.
 * Real clock (TOTP codes are computed here from the secret shown at enrolment); no Redis (the guarantees
 * must come from the database, not from a cache relay).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { SQL } from 'bun'
import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTestDatabase, dropTestDatabase } from '../db/pg-helpers'
import { ownerCreated } from './accounts'
import { call, OWNER_EMAIL, OWNER_PASSWORD, signIn, startBinary, type Running, type Session } from './harness'

const SECRET = 'cross-instance-test-secret-0123456789-abcdefghijklmnop'
const PASSWORD = 'a long cross instance passphrase 7'
/** Parallel attempts per round, split across the two instances. */
const PAR = 20
/** Failures within the window that lock: above one round of PAR, so a round's count is visible unlocked. */
const THRESHOLD = 30
const SLOW = 60_000
const ROUNDS_LOCK = 10
/** Owners at the start of each removal round, and rounds. */
const OWNERS = 2
const ROUNDS_OWNER = 30

const ENV: Record<string, string> = {
  BULWARK_ENV: 'test', // argon2 at its test cost; otherwise production rules
  BULWARK_SECRET: SECRET,
  BULWARK_PUBLIC_URL: 'http://localhost:3000', // one issuer for both, as behind a load balancer
  BULWARK_RATE_LIMIT: 'off', // every request comes from 127.0.0.1; the guarantees under test are not rate limits
  BULWARK_LOCKOUT_THRESHOLD: String(THRESHOLD),
  BULWARK_REFRESH_REUSE_GRACE: '30s', // a busy 2-core machine must not turn a concurrent retry into "reuse"
  BULWARK_DB_BUSY_RETRY: '20s', // two processes on one SQLite file wait for each other's write lock
  BULWARK_UPLOADS: '0',
}

// ---------------------------------------------------------------- the database, read (and seeded) directly

interface Store {
  /** `?` placeholders; rows as plain objects. */
  q(text: string, ...params: unknown[]): Promise<Record<string, any>[]>
  bool(b: boolean): unknown
  close(): Promise<void>
}

function sqliteStore(path: string): Store {
  const db = new Database(path)
  db.run('PRAGMA busy_timeout = 10000')
  return {
    q: async (text, ...params) => db.query(text).all(...(params as any[])) as Record<string, any>[],
    bool: (b) => (b ? 1 : 0),
    close: async () => db.close(),
  }
}

function pgStore(url: string): Store {
  const sql = new SQL(url, { max: 1 })
  return {
    q: async (text, ...params) => {
      let i = 0
      return [...(await sql.unsafe(text.replace(/\?/g, () => `$${++i}`), params as any[]))]
    },
    bool: (b) => b,
    close: async () => sql.close(),
  }
}

const num = (v: unknown) => (v === null || v === undefined ? v : Number(v))

// ---------------------------------------------------------------- which engines

/** Why PostgreSQL is not exercised, or undefined when it is. */
const PG_SKIP = process.env.BULWARK_TEST_PG_URL ? undefined : 'BULWARK_TEST_PG_URL is not set'

// ---------------------------------------------------------------- two instances on one database

type Engine = 'SQLite' | 'PostgreSQL'

interface Cluster {
  a: Running
  b: Running
  db: Store
  /** Attempt i goes to A when even, to B when odd. */
  node(i: number): Running
  /** Two actors with a seeded role above `owner` (level 500, `*:*`): one signed in on each instance. */
  rootA: Session
  rootB: Session
  stop(): Promise<void>
}

const ROOT_ROLE_ID = '00000000-0000-7000-8000-00000000c1c1'

async function startCluster(engine: Engine): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'bw-ci-'))
  // Undone in reverse order by stop(), or at once when the start fails half-way (no database or folder left behind).
  const undo: (() => Promise<unknown> | void)[] = [() => rmSync(dir, { recursive: true, force: true })]
  const stop = async () => {
    for (const u of undo.reverse()) await u()
  }
  try {
    return await startClusterIn(engine, dir, undo, stop)
  } catch (err) {
    await stop()
    throw err
  }
}

async function startClusterIn(engine: Engine, dir: string, undo: (() => Promise<unknown> | void)[], stop: () => Promise<void>): Promise<Cluster> {
  const env = { ...ENV }
  if (engine === 'SQLite') {
    env.BULWARK_DB_PATH = join(dir, 'shared.sqlite')
  } else {
    const url = await createTestDatabase()
    env.BULWARK_DATABASE_URL = url
    undo.push(() => dropTestDatabase(url))
  }
  // A first instance migrates, creates the first owner and registers the two actors, then stops; the role above
  // `owner` (no API creates one: roles are only made below one's own level) is seeded while nothing runs, so no
  // instance holds a cached copy of those users' roles.
  const setup = await startBinary({ env, workdir: dir })
  undo.push(() => setup.stop())
  await ownerCreated(setup)
  const actors: string[] = []
  for (const n of [1, 2]) {
    const r = await call(setup.base, 'POST', '/v1/auth/register', { body: { email: `root${n}@example.com`, password: PASSWORD } })
    if (r.status !== 201) throw new Error(`register root${n}: ${r.status} ${r.text}`)
    actors.push(r.json.user.id)
  }
  await setup.stop()
  const db = engine === 'SQLite' ? sqliteStore(env.BULWARK_DB_PATH!) : pgStore(env.BULWARK_DATABASE_URL!)
  undo.push(() => db.close())
  const now = Date.now()
  await db.q('INSERT INTO roles (id, name, level, description, builtin, mfa_required, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', ROOT_ROLE_ID, 'root', 500, 'test: above owner', db.bool(false), db.bool(false), now, now)
  await db.q('INSERT INTO role_permissions (role_id, permission) VALUES (?, ?)', ROOT_ROLE_ID, '*:*')
  for (const id of actors) await db.q('INSERT INTO user_roles (user_id, role_id, granted_by, created_at) VALUES (?, ?, NULL, ?)', id, ROOT_ROLE_ID, now)

  // Both start at once on the migrated database.
  const started = await Promise.allSettled([startBinary({ env, workdir: dir }), startBinary({ env, workdir: dir })])
  for (const r of started) if (r.status === 'fulfilled') undo.push(() => r.value.stop())
  for (const r of started) if (r.status === 'rejected') throw r.reason
  const [a, b] = started.map((r) => (r as PromiseFulfilledResult<Running>).value) as [Running, Running]
  const rootA = await signIn(a.base, 'root1@example.com', PASSWORD)
  const rootB = await signIn(b.base, 'root2@example.com', PASSWORD)
  for (const [n, s] of [[a, rootA], [b, rootB]] as const) {
    const r = await call(n.base, 'GET', '/v1/users?limit=1', { token: s.accessToken })
    if (r.status !== 200) throw new Error(`the seeded root actor is not effective: ${r.status} ${r.text}`)
  }
  return {
    a,
    b,
    db,
    node: (i) => (i % 2 === 0 ? a : b),
    rootA,
    rootB,
    stop,
  }
}

// ---------------------------------------------------------------- helpers

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const uniq = () => crypto.randomUUID().slice(0, 8)
/** Statuses sorted, so one comparison shows every answer. */
const statuses = (rs: { status: number }[]) => rs.map((r) => r.status).sort((x, y) => x - y)

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s steps) of a base32 secret at a given step. */
function totpAt(secretB32: string, step: number): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0
  let value = 0
  const bytes: number[] = []
  for (const ch of secretB32.replace(/=+$/, '')) {
    value = (value << 5) | A.indexOf(ch)
    bits += 5
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(step))
  const mac = createHmac('sha1', Buffer.from(bytes)).update(msg).digest()
  const off = mac[mac.length - 1]! & 0x0f
  return String((((mac[off]! & 0x7f) << 24) | (mac[off + 1]! << 16) | (mac[off + 2]! << 8) | mac[off + 3]!) % 1_000_000).padStart(6, '0')
}
const stepNow = () => Math.floor(Date.now() / 30_000)

/** Enrols and confirms TOTP in a session (lifts an owner session's MFA-enrolment confinement); returns the secret. */
async function enrolTotp(base: string, token: string): Promise<{ secret: string; step: number }> {
  const e = await call(base, 'POST', '/v1/me/mfa/totp', { token })
  if (e.status !== 200) throw new Error(`totp enrol: ${e.status} ${e.text}`)
  const step = stepNow()
  const c = await call(base, 'POST', '/v1/me/mfa/totp/confirm', { token, body: { code: totpAt(e.json.secret, step) } })
  if (c.status !== 200) throw new Error(`totp confirm: ${c.status} ${c.text}`)
  return { secret: e.json.secret, step }
}

/** Active accounts holding `owner`, counted as the server counts them. */
async function activeOwners(db: Store): Promise<string[]> {
  const rows = await db.q("SELECT u.id FROM user_roles ur JOIN roles r ON r.id = ur.role_id JOIN users u ON u.id = ur.user_id WHERE r.name = 'owner' AND u.status = 'active'")
  return rows.map((r) => r.id as string)
}

// ---------------------------------------------------------------- the suite, once per engine

function suite(engine: Engine, skip: string | undefined) {
  const title = (t: string) => `${engine}, two instances: ${t}${skip ? ` (skipped: ${skip})` : ''}`
  describe(`cross-instance guarantees on ${engine}`, () => {
    let c: Cluster
    beforeAll(async () => {
      if (!skip) c = await startCluster(engine)
    }, SLOW)
    afterAll(async () => {
      await c?.stop()
    }, SLOW)

    test.skipIf(!!skip)(
      title(`a unique email is registered once: ${PAR} parallel registrations (mixed case) give one 201 and ${PAR - 1} 409, and one row, in each of 5 rounds`),
      async () => {
        for (let round = 0; round < 5; round++) {
          const email = `race-${round}-${uniq()}@example.com`
          const variant = (i: number) => (i % 3 === 0 ? email.toUpperCase() : i % 3 === 1 ? email.replace('race', 'Race') : email)
          const rs = await Promise.all(range(PAR).map((i) => call(c.node(i).base, 'POST', '/v1/auth/register', { body: { email: variant(i), password: PASSWORD } })))
          expect(statuses(rs)).toEqual([201, ...range(PAR - 1).map(() => 409)])
          expect(rs.filter((r) => r.status === 409).every((r) => r.json?.code === 'conflict')).toBe(true)
          const rows = await c.db.q('SELECT id FROM users WHERE lower(email) = ?', email)
          expect(rows.length).toBe(1)
          expect(rows[0]!.id).toBe(rs.find((r) => r.status === 201)!.json.user.id)
        }
      },
      SLOW,
    )

    test.skipIf(!!skip)(
      title(`a refresh token is spent once: ${PAR} parallel refreshes all get the same successor (the grace answer), one successor row, 6 rounds down one chain; the oldest token later ends the whole family`),
      async () => {
        const email = `refresh-${uniq()}@example.com`
        const first = await signIn(c.a.base, email, PASSWORD, true)
        const [session] = await c.db.q('SELECT id FROM sessions WHERE user_id = ?', first.userId)
        const sid = session!.id as string
        let token = first.refreshToken
        for (let round = 0; round < 6; round++) {
          const rs = await Promise.all(range(PAR).map((i) => call(c.node(i).base, 'POST', '/v1/auth/refresh', { body: { refreshToken: token } })))
          expect(statuses(rs)).toEqual(range(PAR).map(() => 200))
          const successors = new Set(rs.map((r) => r.json.refreshToken as string))
          expect(successors.size).toBe(1) // one successor: two would be two refresh families
          const next = [...successors][0]!
          expect(next).not.toBe(token)
          // The database: one new row per round, exactly one unspent token, the session alive, no reuse recorded.
          const tokens = await c.db.q('SELECT used_at, replaced_by FROM refresh_tokens WHERE session_id = ?', sid)
          expect(tokens.length).toBe(round + 2)
          expect(tokens.filter((t) => t.used_at === null).length).toBe(1)
          expect(new Set(tokens.filter((t) => t.replaced_by !== null).map((t) => t.replaced_by)).size).toBe(round + 1)
          const [s] = await c.db.q('SELECT revoked_at FROM sessions WHERE id = ?', sid)
          expect(s!.revoked_at).toBeNull()
          // Any of the access tokens works on the other instance.
          expect((await call(c.b.base, 'GET', '/v1/me', { token: rs[0]!.json.accessToken })).status).toBe(200)
          token = next
        }
        expect((await c.db.q("SELECT id FROM security_events WHERE type = 'refresh_token_reuse' AND target_id = ?", first.userId)).length).toBe(0)
        // The first token (its successor long spent) is reuse: the session ends and the newest token dies with it.
        const reuse = await call(c.b.base, 'POST', '/v1/auth/refresh', { body: { refreshToken: first.refreshToken } })
        expect(reuse.status).toBe(401)
        expect(reuse.json.code).toBe('invalid_refresh_token')
        const [s] = await c.db.q('SELECT revoked_reason FROM sessions WHERE id = ?', sid)
        expect(s!.revoked_reason).toBe('refresh_token_reuse')
        expect((await call(c.a.base, 'POST', '/v1/auth/refresh', { body: { refreshToken: token } })).status).toBe(401)
      },
      SLOW,
    )

    test.skipIf(!!skip)(
      title(`a TOTP step is accepted once: ${PAR} parallel second-factor sign-ins with the same code give one 200 and one session, in each of 4 rounds (a new account each)`),
      async () => {
        for (let round = 0; round < 4; round++) {
          const email = `totp-${round}-${uniq()}@example.com`
          const s = await signIn(c.a.base, email, PASSWORD, true)
          const { secret, step } = await enrolTotp(c.a.base, s.accessToken)
          // The confirmation spent `step`; the next step's code is inside the window (±1) and unused.
          const code = totpAt(secret, step + 1)
          const logins = await Promise.all(range(PAR).map((i) => call(c.node(i).base, 'POST', '/v1/auth/login', { body: { email, password: PASSWORD } })))
          expect(logins.every((l) => l.status === 200 && l.json.mfaRequired === true)).toBe(true)
          const before = (await c.db.q('SELECT id FROM sessions WHERE user_id = ?', s.userId)).length
          const rs = await Promise.all(range(PAR).map((i) => call(c.node(i + 1).base, 'POST', '/v1/auth/mfa/verify', { body: { mfaToken: logins[i]!.json.mfaToken, totp: code } })))
          expect(statuses(rs)).toEqual([200, ...range(PAR - 1).map(() => 401)])
          expect(rs.filter((r) => r.status === 401).every((r) => r.json?.code === 'invalid_mfa_proof')).toBe(true)
          expect((await c.db.q('SELECT id FROM sessions WHERE user_id = ?', s.userId)).length).toBe(before + 1)
          const [f] = await c.db.q('SELECT last_step FROM totp_factors WHERE user_id = ?', s.userId)
          expect(num(f!.last_step)).toBe(step + 1)
        }
      },
      SLOW,
    )

    test.skipIf(!!skip)(
      title(`lockout counters are not lost: ${PAR} parallel wrong passwords leave failures = ${PAR}; ${PAR} more lock the account exactly once at the threshold (${THRESHOLD}), in each of ${ROUNDS_LOCK} rounds (a new account each)`),
      async () => {
        for (let round = 0; round < ROUNDS_LOCK; round++) {
          const email = `lock-${round}-${uniq()}@example.com`
          const reg = await call(c.a.base, 'POST', '/v1/auth/register', { body: { email, password: PASSWORD } })
          expect(reg.status).toBe(201)
          const userId = reg.json.user.id as string
          const wrong = () => Promise.all(range(PAR).map((i) => call(c.node(i).base, 'POST', '/v1/auth/login', { body: { email, password: `wrong passphrase number ${i}` } })))
          const first = await wrong()
          expect(statuses(first)).toEqual(range(PAR).map(() => 401))
          let [row] = await c.db.q("SELECT failures, lock_count, locked_until FROM lockouts WHERE user_id = ? AND kind = 'password'", userId)
          expect({ failures: num(row!.failures), lockCount: num(row!.lock_count), lockedUntil: row!.locked_until }).toEqual({ failures: PAR, lockCount: 0, lockedUntil: null })
          const second = await wrong()
          expect(statuses(second)).toEqual(range(PAR).map(() => 401))
          ;[row] = await c.db.q("SELECT failures, lock_count, locked_until FROM lockouts WHERE user_id = ? AND kind = 'password'", userId)
          // The 30th failure locked (and reset the count); the ten after it met a locked account and counted nothing.
          expect({ failures: num(row!.failures), lockCount: num(row!.lock_count) }).toEqual({ failures: 0, lockCount: 1 })
          expect(num(row!.locked_until)).toBeGreaterThan(Date.now())
          expect((await c.db.q("SELECT id FROM security_events WHERE type = 'account_locked' AND target_id = ?", userId)).length).toBe(1)
        }
      },
      SLOW,
    )

    test.skipIf(!!skip)(
      title(`owners cannot demote each other: two owners, one on each instance, revoke each other's owner role ${PAR} times at once; every answer is 403 and both stay owners`),
      async () => {
        // The first owner (created by the setup instance) and a second one granted by an actor above `owner`;
        // each enrols TOTP in its session, which lifts the MFA-enrolment confinement of owner sessions.
        const o1 = await signIn(c.a.base, OWNER_EMAIL, OWNER_PASSWORD)
        await enrolTotp(c.a.base, o1.accessToken)
        const email = `owner-peer-${uniq()}@example.com`
        const reg = await call(c.b.base, 'POST', '/v1/auth/register', { body: { email, password: PASSWORD } })
        expect(reg.status).toBe(201)
        expect((await call(c.b.base, 'PUT', `/v1/users/${reg.json.user.id}/roles/owner`, { token: c.rootB.accessToken })).status).toBe(204)
        const o2 = await signIn(c.b.base, email, PASSWORD)
        await enrolTotp(c.b.base, o2.accessToken)
        expect((await activeOwners(c.db)).sort()).toEqual([o1.userId, o2.userId].sort())
        const rs = await Promise.all(
          range(PAR).map((i) =>
            i % 2 === 0
              ? call(c.a.base, 'DELETE', `/v1/users/${o2.userId}/roles/owner`, { token: o1.accessToken })
              : call(c.b.base, 'DELETE', `/v1/users/${o1.userId}/roles/owner`, { token: o2.accessToken }),
          ),
        )
        expect(statuses(rs)).toEqual(range(PAR).map(() => 403))
        // The owner role requires MFA: an instance that already sees the grant confines the password-only session
        // (mfa_enrollment_required); one still holding the older cached roles refuses on the level rule (forbidden).
        expect(rs.every((r) => r.json?.code === 'forbidden' || r.json?.code === 'mfa_enrollment_required')).toBe(true)
        expect((await activeOwners(c.db)).sort()).toEqual([o1.userId, o2.userId].sort())
      },
      SLOW,
    )

    test.skipIf(!!skip)(
      title(`the last owner cannot be removed by two actors at once: with two owners left, an actor on A removes one and an actor on B the other (${PAR} parallel attempts: revoke the role, disable, delete); exactly one active owner remains, in each of ${ROUNDS_OWNER} rounds`),
      async () => {
        const actors = [c.rootA, c.rootB]
        const kinds = ['revoke', 'disable', 'delete'] as const
        let survivors = await activeOwners(c.db) // the two of the test above
        expect(survivors.length).toBeGreaterThanOrEqual(1)
        for (let round = 0; round < ROUNDS_OWNER; round++) {
          // Back to two active owners: new accounts granted `owner` by an actor above it.
          const fresh = await Promise.all(
            range(OWNERS - survivors.length).map(async (i) => {
              const r = await call(c.node(i).base, 'POST', '/v1/auth/register', { body: { email: `owner-${round}-${i}-${uniq()}@example.com`, password: PASSWORD } })
              expect(`${r.status} ${r.text}`).toStartWith('201')
              const g = await call(c.node(i).base, 'PUT', `/v1/users/${r.json.user.id}/roles/owner`, { token: actors[i % 2]!.accessToken })
              expect(g.status).toBe(204)
              return r.json.user.id as string
            }),
          )
          const owners = [...survivors, ...fresh]
          expect((await activeOwners(c.db)).sort()).toEqual([...owners].sort())
          // A's attempts (even i) all go for owner 0, B's (odd i) for owner 1: two removals that are each fine alone.
          const rs = await Promise.all(
            range(PAR).map((i) => {
              const target = owners[i % OWNERS]!
              const node = c.node(i)
              const token = actors[i % 2]!.accessToken
              const kind = kinds[(i + round) % 3]!
              if (kind === 'revoke') return call(node.base, 'DELETE', `/v1/users/${target}/roles/owner`, { token })
              if (kind === 'disable') return call(node.base, 'PATCH', `/v1/users/${target}`, { token, body: { status: 'disabled' } })
              return call(node.base, 'DELETE', `/v1/users/${target}`, { token })
            }),
          )
          survivors = await activeOwners(c.db)
          expect({ round, activeOwners: survivors.length }).toEqual({ round, activeOwners: 1 })
          for (const r of rs) expect([200, 204, 403, 404]).toContain(r.status)
          expect(rs.some((r) => r.status === 403)).toBe(true) // the last one was refused
          expect(owners).toContain(survivors[0]!)
        }
        // The survivor still signs in as an owner would (its role row and account are intact).
        const [u] = await c.db.q('SELECT status FROM users WHERE id = ?', survivors[0]!)
        expect(u!.status).toBe('active')
      },
      SLOW,
    )

    test.skipIf(!!skip)(
      title('the users list of one instance shows at once what the other changed: each entry is checked against its row version, with no event between them (no Redis)'),
      async () => {
        const s = await signIn(c.a.base, `listed-${uniq()}@example.com`, PASSWORD, true)
        const entryOn = async (node: Running, token: string) => {
          let cursor: string | undefined
          for (;;) {
            const r = await call(node.base, 'GET', `/v1/users?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { token })
            expect(r.status).toBe(200)
            const hit = (r.json.items as { id: string; name: string | null; status: string; roles: string[] }[]).find((u) => u.id === s.userId)
            if (hit || !r.json.nextCursor) return hit
            cursor = r.json.nextCursor
          }
        }
        // A renders and keeps the entry (this test does not see A's cache; test/modules/users-views.test.ts counts its hits).
        expect(await entryOn(c.a, c.rootA.accessToken)).toMatchObject({ name: null, status: 'active' })
        // B renames it (the user's own PATCH /v1/me, no event at all), twice, and disables it (an event B alone hears).
        expect((await call(c.b.base, 'PATCH', '/v1/me', { token: s.accessToken, body: { name: 'First' } })).status).toBe(200)
        expect((await entryOn(c.a, c.rootA.accessToken))?.name).toBe('First')
        expect((await call(c.b.base, 'PATCH', '/v1/me', { token: s.accessToken, body: { name: 'Second' } })).status).toBe(200)
        expect((await entryOn(c.a, c.rootA.accessToken))?.name).toBe('Second')
        expect((await call(c.b.base, 'PATCH', `/v1/users/${s.userId}`, { token: c.rootB.accessToken, body: { status: 'disabled' } })).status).toBe(200)
        expect(await entryOn(c.a, c.rootA.accessToken)).toMatchObject({ name: 'Second', status: 'disabled' })
      },
      SLOW,
    )
  })
}

suite('SQLite', undefined)
suite('PostgreSQL', PG_SKIP)

// ---------------------------------------------------------------- SQLite: waiting for another process's write lock

/** A second process on the SQLite file (standing in for the other instance in a long write): takes the write lock and lets go when told. */
async function lockHolder(dbFile: string, dir: string) {
  const script = join(dir, 'hold.ts')
  writeFileSync(
    script,
    `import { Database } from 'bun:sqlite'
const db = new Database(${JSON.stringify(dbFile)})
db.run('PRAGMA busy_timeout = 5000')
process.stdout.write('ready\\n')
for await (const line of console) {
  if (line === 'lock') { db.run('BEGIN IMMEDIATE'); process.stdout.write('locked\\n') }
  if (line === 'release') { db.run('ROLLBACK'); process.stdout.write('released\\n'); break }
}
`,
  )
  const p = Bun.spawn(['bun', script], { stdin: 'pipe', stdout: 'pipe', stderr: 'inherit' })
  let out = ''
  const reader = p.stdout.getReader()
  const decoder = new TextDecoder()
  const until = async (word: string) => {
    while (!out.includes(word)) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`lock holder exited before "${word}": ${out}`)
      out += decoder.decode(value)
    }
  }
  const say = async (line: string, word: string) => {
    p.stdin.write(`${line}\n`)
    p.stdin.flush()
    await until(word)
  }
  await until('ready')
  return { lock: () => say('lock', 'locked'), release: () => say('release', 'released'), kill: () => p.kill() }
}

describe('SQLite, two processes on one file: waiting for the other one\'s write lock', () => {
  // The busy retry (src/plugins/storage-retry.ts) once decided "nothing was written" from the connection's
  // total_changes(), which any other request's write moves, so such a request answered 503 at once.
  test(
    'a write refused by another process\'s lock waits for it (BULWARK_DB_BUSY_RETRY) even when another request of the same instance wrote meanwhile, then succeeds',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'bw-ci-busy-'))
      const dbFile = join(dir, 'shared.sqlite')
      const env = { ...ENV, BULWARK_DB_PATH: dbFile, BULWARK_DB_BUSY_RETRY: '60s' }
      let holder: Awaited<ReturnType<typeof lockHolder>> | undefined
      let slow: Running | undefined
      try {
        // A session to refresh later (a write that needs no password hash), made at the test hashing cost.
        const fast = await startBinary({ env, workdir: dir })
        const u = await signIn(fast.base, `busy-${uniq()}@example.com`, PASSWORD, true)
        await fast.stop()
        // The same database with a slow hash, so a registration is still hashing when the lock is taken.
        slow = await startBinary({ env: { ...env, BULWARK_ARGON2_MEMORY_KIB: '65536', BULWARK_ARGON2_TIME: '6' }, workdir: dir })
        holder = await lockHolder(dbFile, dir)
        let xDone = false
        const x = call(slow.base, 'POST', '/v1/auth/register', { body: { email: `busy-x-${uniq()}@example.com`, password: PASSWORD } }).finally(() => (xDone = true))
        await call(slow.base, 'GET', '/health/live') // X is in the server before the other write
        const y = await call(slow.base, 'POST', '/v1/auth/refresh', { body: { refreshToken: u.refreshToken } })
        expect(y.status).toBe(200) // another request of this instance wrote while X was running
        await holder.lock()
        expect(xDone).toBe(false) // (setup) X reaches the database only after the lock is held
        const logged = () => slow!.stdout().includes('waiting to retry')
        for (let i = 0; i < 3000 && !xDone && !logged(); i++) await Bun.sleep(10)
        // Refused by the held lock before it changed anything, X must wait for the lock, not answer 503 now.
        const early = xDone ? await x : undefined
        expect({ answeredWhileLocked: early ? `${early.status} ${early.json?.code}` : null, waitingLogged: logged() }).toEqual({ answeredWhileLocked: null, waitingLogged: true })
        await holder.release()
        expect((await x).status).toBe(201)
      } finally {
        holder?.kill()
        await slow?.stop()
        rmSync(dir, { recursive: true, force: true })
      }
    },
    SLOW,
  )
})
