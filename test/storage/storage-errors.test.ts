/**
 * Storage failures become 503 problems with Retry-After, readiness says why, and both recover without a
 * restart. Disk full is SQLite's own `max_page_count` on the app's handle; read-only is `PRAGMA query_only`.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { DrizzleQueryError } from 'drizzle-orm/errors'
import { classifyStorageError, storageAppError, unstorableTextError } from '../../src/lib/storage-errors'
import { expectProblem, makeApp, signUp, STRONG_PASSWORD, uniqueEmail, type TestApp } from '../helpers'

const COUNT = {
  users: 'SELECT count(*) AS n FROM users',
  sessions: 'SELECT count(*) AS n FROM sessions',
  // accounts without their verification token (what a half-written registration would leave)
  orphans: "SELECT count(*) AS n FROM users u WHERE NOT EXISTS (SELECT 1 FROM email_tokens t WHERE t.user_id = u.id AND t.purpose = 'verify_email')",
} as const
const count = (a: TestApp, table: keyof typeof COUNT) => a.deps.storage.sqlite!.query<{ n: number }, []>(COUNT[table]).get()!.n

/** Caps the database at its current size and uses up the free pages: the next page it needs is refused. */
function fillDatabase(a: TestApp) {
  const db = a.deps.storage.sqlite!
  db.run('CREATE TABLE IF NOT EXISTS test_filler (x BLOB)')
  const pages = db.query<{ page_count: number }, []>('PRAGMA page_count').get()!.page_count
  db.run(`PRAGMA max_page_count = ${pages}`)
  try {
    for (let i = 0; i < 100_000; i++) db.run('INSERT INTO test_filler VALUES (randomblob(3000))')
  } catch (e) {
    expect((e as { code?: string }).code).toBe('SQLITE_FULL')
    return
  }
  throw new Error('the database never filled up')
}

describe('storage error mapping', () => {
  test('SQLite codes map to storage failures; anything else is not one', () => {
    const err = (code: string, errno: number) => Object.assign(new Error('x'), { code, errno })
    expect(classifyStorageError(err('SQLITE_FULL', 13))).toBe('full')
    expect(classifyStorageError(err('SQLITE_READONLY_DBMOVED', 1032))).toBe('readonly')
    expect(classifyStorageError(err('SQLITE_IOERR_WRITE', 778))).toBe('io')
    expect(classifyStorageError(err('SQLITE_CANTOPEN', 14))).toBe('cantopen')
    expect(classifyStorageError(err('SQLITE_BUSY_SNAPSHOT', 517))).toBe('busy')
    expect(classifyStorageError(err('SQLITE_CONSTRAINT_UNIQUE', 2067))).toBeUndefined()
    expect(classifyStorageError(new Error('SQLITE_FULL'))).toBeUndefined()
    // drizzle wraps the driver error; the cause is what counts
    expect(classifyStorageError(new DrizzleQueryError('insert into x', [], err('SQLITE_FULL', 13)))).toBe('full')
    const busy = storageAppError(err('SQLITE_BUSY', 5))!
    expect([busy.status, busy.code, busy.extra?.headers?.['retry-after']]).toEqual([503, 'storage_busy', '1'])
    const full = storageAppError(err('SQLITE_FULL', 13))!
    expect([full.status, full.code, full.extra?.headers?.['retry-after']]).toEqual([503, 'storage_unavailable', '30'])
  })

  test('PostgreSQL failures (Bun client codes, SQLSTATEs) map to storage failures; constraint and syntax errors do not', () => {
    const server = (state: string) => Object.assign(new Error('x'), { name: 'PostgresError', code: 'ERR_POSTGRES_SERVER_ERROR', errno: state })
    const client = (code: string) => Object.assign(new Error('x'), { name: 'PostgresError', code })
    expect(classifyStorageError(client('ERR_POSTGRES_CONNECTION_REFUSED'))).toBe('unreachable')
    expect(classifyStorageError(client('ERR_POSTGRES_CONNECTION_CLOSED'))).toBe('unreachable')
    expect(classifyStorageError(client('ERR_POSTGRES_CONNECTION_TIMEOUT'))).toBe('unreachable')
    expect(classifyStorageError(server('57P01'))).toBe('unreachable') // admin shutdown
    expect(classifyStorageError(server('08006'))).toBe('unreachable')
    expect(classifyStorageError(server('53300'))).toBe('unreachable') // too many connections
    expect(classifyStorageError(server('53100'))).toBe('full')
    expect(classifyStorageError(server('57014'))).toBe('busy') // statement timeout
    expect(classifyStorageError(server('40001'))).toBe('busy')
    expect(classifyStorageError(server('25006'))).toBe('readonly')
    expect(classifyStorageError(server('58030'))).toBe('io')
    expect(classifyStorageError(server('23505'))).toBeUndefined() // unique violation: the request's problem
    expect(classifyStorageError(server('42601'))).toBeUndefined() // syntax error: a bug
    expect(classifyStorageError(client('ERR_POSTGRES_INVALID_QUERY_BINDING'))).toBeUndefined()
    expect(classifyStorageError(new DrizzleQueryError('select 1', [], client('ERR_POSTGRES_CONNECTION_REFUSED')))).toBe('unreachable')
    const down = storageAppError(new DrizzleQueryError('select 1', [], client('ERR_POSTGRES_CONNECTION_REFUSED')))!
    expect([down.status, down.code, down.detail, (down as unknown as { sqlite: string }).sqlite]).toEqual([503, 'storage_unavailable', 'Storage is unavailable right now (the database cannot be reached); try again later.', 'ERR_POSTGRES_CONNECTION_REFUSED'])
    expect(storageAppError(server('57014'))!.code).toBe('storage_busy')
  })

  test('text PostgreSQL cannot store (U+0000) is the request\'s 422, not a storage failure or a 500', () => {
    const server = (state: string) => Object.assign(new Error('x'), { name: 'PostgresError', code: 'ERR_POSTGRES_SERVER_ERROR', errno: state })
    const nul = unstorableTextError(new DrizzleQueryError('select 1', [], server('22021')))!
    expect([nul.status, nul.code]).toEqual([422, 'validation_failed'])
    expect(unstorableTextError(server('22P05'))?.status).toBe(422)
    expect(unstorableTextError(server('23505'))).toBeUndefined()
    expect(classifyStorageError(server('22021'))).toBeUndefined()
  })

  test('a real bun:sqlite error carries the code the mapping reads', async () => {
    const db = new Database(':memory:')
    db.run('CREATE TABLE t (x)')
    db.run('PRAGMA query_only = 1')
    let caught: unknown
    try {
      db.run('INSERT INTO t VALUES (1)')
    } catch (e) {
      caught = e
    }
    expect(classifyStorageError(caught)).toBe('readonly')
    await db.close()
  })
})

describe('disk full (max_page_count) and read-only (query_only)', () => {
  let a: TestApp
  afterEach(() => a?.close())

  test('a full database answers writes with 503 storage_unavailable, writes nothing, fails readiness, and recovers', async () => {
    a = await makeApp({ BULWARK_RATE_LIMIT: 'off' })
    const before = await signUp(a)
    fillDatabase(a)
    // The next write that needs a page fails; until then writes that fit in existing pages succeed.
    let reg
    let users = 0
    for (let i = 0; i < 200; i++) {
      users = count(a, 'users')
      reg = await a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD } })
      if (reg.status !== 201) break
    }
    expectProblem(reg!, 503, 'storage_unavailable')
    expect(reg!.headers.get('retry-after')).toBe('30')
    // the failed registration left nothing behind: no account, no mail, no verification token
    expect(await count(a, 'users')).toBe(users)
    expect(await count(a, 'orphans')).toBe(0)
    let login
    let sessions = 0
    for (let i = 0; i < 200; i++) {
      sessions = count(a, 'sessions')
      login = await a.req('POST', '/v1/auth/login', { body: { email: before.email, password: STRONG_PASSWORD } })
      if (login.status !== 200) break
    }
    expectProblem(login!, 503, 'storage_unavailable')
    expect(await count(a, 'sessions')).toBe(sessions)

    const ready = await a.req('GET', '/health/ready')
    expect(ready.status).toBe(503)
    expect(ready.body.checks.database.status).toBe('down')
    expect(ready.body.checks.database.detail).toContain('SQLITE_FULL')
    // reads and liveness keep working
    expect((await a.req('GET', '/health/live')).status).toBe(200)
    expect((await a.req('GET', '/v1/me', { token: before.accessToken })).status).toBe(200)

    // space comes back: no restart needed
    a.deps.storage.sqlite!.run('DROP TABLE test_filler')
    a.deps.storage.sqlite!.run('PRAGMA max_page_count = 1073741823')
    a.clock.advance(1000)
    const again = await a.req('GET', '/health/ready')
    expect(again.status).toBe(200)
    expect(again.body.checks.database.status).toBe('ok')
    expect((await a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD } })).status).toBe(201)
  })

  test('a read-only database answers writes with 503 storage_unavailable and readiness says read-only, until it is writable again', async () => {
    a = await makeApp()
    const before = await signUp(a)
    a.deps.storage.sqlite!.run('PRAGMA query_only = 1')
    const users = count(a, 'users')

    const reg = await a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD } })
    expectProblem(reg, 503, 'storage_unavailable')
    expect(Number(reg.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(reg.text).not.toContain('SQLITE')
    expect(reg.text).not.toMatch(/insert|select/i)
    expect(await count(a, 'users')).toBe(users)
    const logout = await a.req('POST', '/v1/auth/logout-all', { token: before.accessToken })
    expect(logout.status).toBe(503)

    a.clock.advance(1000)
    const ready = await a.req('GET', '/health/ready')
    expect(ready.status).toBe(503)
    expect(ready.body.checks.database.detail).toContain('read-only')

    a.deps.storage.sqlite!.run('PRAGMA query_only = 0')
    a.clock.advance(1000)
    expect((await a.req('GET', '/health/ready')).status).toBe(200)
    expect((await a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD } })).status).toBe(201)
  })
})
