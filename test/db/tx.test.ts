import { afterEach, describe, expect, test } from 'bun:test'
import { eq, sql } from 'drizzle-orm'
import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core'
import { openDatabase, type DbHandle } from '../../src/db/client'
import { preparedQuery, withTransaction } from '../../src/db/tx'

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

