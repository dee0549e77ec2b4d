import { afterEach, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eq, sql } from 'drizzle-orm'
import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core'
import { openDatabase, type DbHandle } from '../../src/db/client'
import { MAX_GROUP, MAX_GROUP_MS, preparedQuery, withTransaction } from '../../src/db/tx'

let h: DbHandle
afterEach(() => h?.close())

function setup() {
  h = openDatabase(':memory:')
  h.db.run(sql`CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0)`)
  return h.db
}
const keys = () => h.db.all<{ k: string }>(sql`SELECT k FROM t ORDER BY k`).map((r) => r.k)
const has = (k: string) => h.db.get<{ k: string }>(sql`SELECT k FROM t WHERE k = ${k}`) !== undefined
/** The counter row (drizzle's `get` of raw SQL gives the row as an array). */
const count = () => h.db.get<[number]>(sql`SELECT n FROM t WHERE k = 'c'`)![0]
/** A real I/O wait inside the transaction: the event loop runs other requests meanwhile. */
const io = () => Bun.sleep(5)
/** One turn of the event loop (no timer). */
const turn = () => new Promise<void>((r) => setImmediate(r))

describe('withTransaction on one shared SQLite connection', () => {
  test('a transaction that fails after an await loses only its own rows: a concurrent acknowledged write survives and never saw the half-done state', async () => {
    const db = setup()
    let started!: () => void
    const inside = new Promise<void>((r) => (started = r))
    const failing = withTransaction(db, async (tx) => {
      tx.run(sql`INSERT INTO t (k) VALUES ('half-done')`)
      started()
      await io()
      throw new Error('boom after an await')
    })
    // The other request: runs while the transaction waits on I/O.
    await inside
    const sawHalfDone = has('half-done')
    db.run(sql`INSERT INTO t (k) VALUES ('acknowledged')`)
    await expect(failing).rejects.toThrow('boom after an await')
    expect(sawHalfDone).toBe(false)
    expect(keys()).toEqual(['acknowledged'])
  })

  test('an interrupted transaction is run again from the start and commits; the other write is kept', async () => {
    const db = setup()
    let runs = 0
    let started!: () => void
    const inside = new Promise<void>((r) => (started = r))
    const tx1 = withTransaction(db, async (tx) => {
      runs++
      tx.run(sql`INSERT INTO t (k) VALUES ('from-tx')`)
      started()
      await io()
      tx.run(sql`INSERT INTO t (k) VALUES ('from-tx-2')`)
      return runs
    })
    await inside
    db.run(sql`INSERT INTO t (k) VALUES ('outside')`)
    expect(await tx1).toBe(2)
    expect(keys()).toEqual(['from-tx', 'from-tx-2', 'outside'])
    expect(h.gate.interrupted).toBe(1)
  })

  test('concurrent read-modify-write transactions with awaits run one at a time: no lost update', async () => {
    const db = setup()
    db.run(sql`INSERT INTO t (k, n) VALUES ('c', 0)`)
    const bump = () =>
      withTransaction(db, async (tx) => {
        const n = count()
        await io()
        tx.run(sql`UPDATE t SET n = ${n + 1} WHERE k = 'c'`)
      })
    await Promise.all([bump(), bump(), bump()])
    expect(await count()).toBe(3)
  })

  test('a statement after the transaction is interrupted never runs outside it, and a nested call joins the outer transaction', async () => {
    const db = setup()
    const r = await withTransaction(db, async (tx) => {
      await withTransaction(tx, async (inner) => inner.run(sql`INSERT INTO t (k) VALUES ('nested')`))
      return 'ok'
    })
    expect(r).toBe('ok')
    await expect(
      withTransaction(db, async (tx) => {
        await withTransaction(tx, async (inner) => inner.run(sql`INSERT INTO t (k) VALUES ('nested-2')`))
        throw new Error('outer fails')
      }),
    ).rejects.toThrow('outer fails')
    expect(keys()).toEqual(['nested'])
  })

  test('a prepared query (preparedQuery) awaited outside a transaction waits for it: it neither interrupts it nor sees its uncommitted rows; inside, it runs in the transaction', async () => {
    const db = setup()
    const t = sqliteTable('t', { k: text('k').primaryKey(), n: integer('n').notNull() })
    const byKey = preparedQuery<{ k: string }, { k: string; n: number }[]>((d, p) => d.select().from(t).where(eq(t.k, p('k'))))
    const insert = preparedQuery<{ k: string; n: number }, unknown>((d, p) => d.insert(t).values({ k: p('k'), n: p('n') }))
    let started!: () => void
    const inside = new Promise<void>((r) => (started = r))
    let seenInside: unknown
    const tx = withTransaction(db, async (tx) => {
      await insert.run(tx, { k: 'in-tx', n: 1 })
      seenInside = (await byKey.all(tx, { k: 'in-tx' }))[0]
      started()
      await io()
      await insert.run(tx, { k: 'in-tx-2', n: 2 })
    })
    await inside
    const outsideRead = byKey.all(db, { k: 'in-tx' })
    const outsideWrite = insert.run(db, { k: 'outside', n: 3 })
    await tx
    expect(seenInside).toEqual({ k: 'in-tx', n: 1 })
    // Queued behind the transaction: it ran after the commit, so it sees the row, and the transaction ran once.
    expect(await outsideRead).toEqual([{ k: 'in-tx', n: 1 }])
    await outsideWrite
    expect(h.gate.interrupted).toBe(0)
    expect(keys()).toEqual(['in-tx', 'in-tx-2', 'outside'])
  })
})

describe('group commit: consecutive waiting transactions share one SQLite commit', () => {
  let dir: string | undefined
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true })
    dir = undefined
  })

  test('transactions waiting in line commit together, each only once its rows are committed (seen from another connection)', async () => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-group-'))
    h = openDatabase(join(dir, 'db.sqlite'))
    const db = h.db
    db.run(sql`CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0)`)
    const other = new Database(join(dir, 'db.sqlite'), { readonly: true })
    const committed = (k: string) => other.query('SELECT k FROM t WHERE k = ?').get(k) !== null
    const before = h.gate.commits
    const seen: boolean[] = []
    await Promise.all(
      ['a', 'b', 'c', 'd', 'e'].map((k) =>
        withTransaction(db, async (tx) => {
          tx.run(sql`INSERT INTO t (k) VALUES (${k})`)
          await turn()
        }).then(() => seen.push(committed(k))),
      ),
    )
    other.close()
    expect(seen).toEqual([true, true, true, true, true])
    expect(keys()).toEqual(['a', 'b', 'c', 'd', 'e'])
    // The first ran alone (nothing was waiting when it began); the four queued behind it shared one commit.
    expect(h.gate.commits - before).toBeLessThan(5)
    expect(h.gate.committedMembers).toBeGreaterThanOrEqual(5)
  })

  test('a member that fails undoes only its own rows; the others commit; its caller gets its error', async () => {
    const db = setup()
    const outcomes = await Promise.allSettled(
      ['a', 'b', 'c'].map((k) =>
        withTransaction(db, async (tx) => {
          tx.run(sql`INSERT INTO t (k) VALUES (${k})`)
          await io()
          if (k === 'b') throw new Error('b fails')
          tx.run(sql`INSERT INTO t (k) VALUES (${`${k}2`})`)
        }),
      ),
    )
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((outcomes[1] as PromiseRejectedResult).reason.message).toBe('b fails')
    expect(keys()).toEqual(['a', 'a2', 'c', 'c2'])
  })

  test('an awaited query in line between transactions ends the group: it sees the earlier ones committed and none of the later', async () => {
    const db = setup()
    const byKey = preparedQuery<{ k: string }, { k: string }[]>((d, p) => d.select({ k: sql<string>`k` }).from(sql`t`).where(sql`k = ${p('k')}`))
    const first = withTransaction(db, async (tx) => {
      tx.run(sql`INSERT INTO t (k) VALUES ('first')`)
      await io()
    })
    const read = Promise.all([byKey.all(db, { k: 'first' }), byKey.all(db, { k: 'second' })])
    const second = withTransaction(db, async (tx) => {
      tx.run(sql`INSERT INTO t (k) VALUES ('second')`)
    })
    const [[a, b]] = await Promise.all([read, first, second])
    expect(a).toEqual([{ k: 'first' }])
    expect(b).toEqual([])
    expect(keys()).toEqual(['first', 'second'])
  })

  test('an interrupted group runs every member again; no member is acknowledged with its work lost', async () => {
    const db = setup()
    const runs: Record<string, number> = { a: 0, b: 0 }
    let started!: () => void
    const bInside = new Promise<void>((r) => (started = r))
    const a = withTransaction(db, async (tx) => {
      runs.a!++
      tx.run(sql`INSERT INTO t (k) VALUES ('a')`)
    })
    const b = withTransaction(db, async (tx) => {
      runs.b!++
      tx.run(sql`INSERT INTO t (k) VALUES ('b')`)
      started()
      await io()
      tx.run(sql`INSERT INTO t (k) VALUES ('b2')`)
    })
    await bInside
    // A synchronous statement from outside while the group (a done, b waiting on I/O) is open: both are rolled back.
    db.run(sql`INSERT INTO t (k) VALUES ('outside')`)
    await Promise.all([a, b])
    expect(runs.b).toBe(2)
    expect(runs.a).toBe(2)
    expect(keys()).toEqual(['a', 'b', 'b2', 'outside'])
  })

  test(`a group open for MAX_GROUP_MS (${MAX_GROUP_MS} ms) takes no new member (another process waits for the write lock meanwhile)`, async () => {
    const db = setup()
    const before = h.gate.commits
    await Promise.all(
      ['a', 'b', 'c', 'd'].map((k) =>
        withTransaction(db, async (tx) => {
          tx.run(sql`INSERT INTO t (k) VALUES (${k})`)
          await Bun.sleep(MAX_GROUP_MS + 1)
        }),
      ),
    )
    expect(keys()).toEqual(['a', 'b', 'c', 'd'])
    expect(h.gate.commits - before).toBe(4)
  })

  test(`a group has at most MAX_GROUP (${MAX_GROUP}) members`, async () => {
    const db = setup()
    const before = h.gate.commits
    await Promise.all(
      Array.from({ length: 3 * MAX_GROUP }, (_, i) =>
        withTransaction(db, async (tx) => {
          tx.run(sql`INSERT INTO t (k) VALUES (${`k${i}`})`)
          await Promise.resolve()
        }),
      ),
    )
    expect(keys().length).toBe(3 * MAX_GROUP)
    expect(h.gate.commits - before).toBeGreaterThanOrEqual(3)
  })
})

