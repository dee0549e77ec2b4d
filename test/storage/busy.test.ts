/**
 * Another connection holding the write lock: requests wait for it asynchronously (the event loop stays
 * free: liveness, readiness and reads answer while it is held), a write that changed nothing yet is
 * retried once the lock is free, and after BULWARK_DB_BUSY_RETRY the answer is 503 storage_busy.
 * Ordering, not wall-clock time, is asserted: answers arrive while the holder still holds the lock.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { Elysia } from 'elysia'
import { sql } from 'drizzle-orm'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expectProblem, makeApp, signUp, STRONG_PASSWORD, uniqueEmail, type TestApp } from '../helpers'

let a: TestApp | undefined
let holder: Database | undefined
let dir: string | undefined
afterEach(() => {
  if (holder?.inTransaction) holder.run('ROLLBACK')
  holder?.close()
  a?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
  a = holder = dir = undefined
})

async function onFile(env: Record<string, string> = {}, opts: Parameters<typeof makeApp>[1] = {}) {
  dir = mkdtempSync(join(tmpdir(), 'bw-busy-'))
  const file = join(dir, 'bulwark.sqlite')
  a = await makeApp({ BULWARK_DB_PATH: file, BULWARK_DATA_DIR: dir, BULWARK_RATE_LIMIT: 'off', ...env }, opts)
  holder = new Database(file)
  return { a, holder }
}

/** Resolves once a log line with this message was written (a condition, not a duration). */
async function logged(t: TestApp, msg: RegExp) {
  for (let i = 0; i < 2000; i++) {
    if (t.logs.some((l) => msg.test(String(l.msg)))) return
    await Bun.sleep(2)
  }
  throw new Error(`never logged ${msg}`)
}

const RETRY_LINE = /write lock held by another connection/

describe('a write lock held by another connection', () => {
  test('other requests answer while it is held; the waiting write succeeds once it is released', async () => {
    const { a, holder } = await onFile({ BULWARK_DB_BUSY_RETRY: '60s' })
    const before = await signUp(a)
    holder.run('BEGIN IMMEDIATE')
    let settled = false
    const email = uniqueEmail()
    const write = a.req('POST', '/v1/auth/register', { body: { email, password: STRONG_PASSWORD } }).finally(() => (settled = true))
    await logged(a, RETRY_LINE)

    expect((await a.req('GET', '/health/live')).status).toBe(200)
    const me = await a.req('GET', '/v1/me', { token: before.accessToken })
    expect(me.status).toBe(200)
    const ready = await a.req('GET', '/health/ready')
    expect(ready.status).toBe(200)
    expect(ready.body.checks.database.status).toBe('degraded')
    // a second write arriving meanwhile waits too, rather than blocking the loop
    const second = a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD } })
    expect(settled).toBe(false)
    expect(holder.inTransaction).toBe(true)

    holder.run('ROLLBACK')
    const r = await write
    expect(r.status).toBe(201)
    expect((await second).status).toBe(201)
    expect(a.deps.storage.sqlite!.query<{ n: number }, [string]>('SELECT count(*) AS n FROM users WHERE email = ?').get(email)!.n).toBe(1)
    // the retried request kept the request id of its first attempt
    const line = a.logs.find((l) => RETRY_LINE.test(String(l.msg)) && l.method === 'POST')
    expect(r.headers.get('x-request-id')).toBe(line?.requestId as string)
  })

  test('held past BULWARK_DB_BUSY_RETRY: 503 storage_busy with Retry-After, never 500', async () => {
    const { a, holder } = await onFile({ BULWARK_DB_BUSY_RETRY: '200ms' })
    holder.run('BEGIN IMMEDIATE')
    const r = await a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD } })
    expectProblem(r, 503, 'storage_busy')
    expect(r.headers.get('retry-after')).toBe('1')
    expect(holder.inTransaction).toBe(true) // answered while the lock was still held
    holder.run('ROLLBACK')
    expect((await a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD } })).status).toBe(201)
  })

  test('a request that already wrote something is not run again', async () => {
    let h: Database | undefined
    const { a, holder } = await onFile({ BULWARK_DB_BUSY_RETRY: '60s' }, {
      routes: (deps) =>
        // Through the app's own (guarded) database handle, as the services write.
        new Elysia().post('/test/two-writes', async () => {
          await deps.db.run(sql`INSERT INTO test_writes VALUES (1)`)
          h!.run('BEGIN IMMEDIATE') // the lock is taken between the two writes
          await deps.db.run(sql`INSERT INTO test_writes VALUES (2)`)
          return { ok: true }
        }),
    })
    h = holder
    a.deps.storage.sqlite!.run('CREATE TABLE test_writes (x)')
    const r = await a.req('POST', '/test/two-writes')
    expectProblem(r, 503, 'storage_busy')
    expect(a.deps.storage.sqlite!.query<{ n: number }, []>('SELECT count(*) AS n FROM test_writes').get()!.n).toBe(1)
    expect(a.logs.some((l) => RETRY_LINE.test(String(l.msg)))).toBe(false)
  })
})
