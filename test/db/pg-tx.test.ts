/**
 * PostgreSQL transactions as `withTransaction` runs them (drizzle's transaction on Bun's `sql.begin`, routed by
 * src/db/tx.ts routeToTransaction): every statement inside one transaction, a throw rolls all back, a failure the
 * callback swallowed fails the transaction rather than passing for a commit, the connection serves the next one;
 * and the end hooks of src/db/tx.ts. openPg directly, on a database of its own.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { openPg } from '../../src/db/pg/client'
import { pgRaw, routeToTransaction, whenTransactionEnds, withTransaction } from '../../src/db/tx'
import { createTestDatabase, dropTestDatabase, PG_SKIP, PG_URL } from './pg-helpers'

const made: string[] = []
afterAll(async () => {
  for (const u of made) await dropTestDatabase(u)
}, 30_000)

async function pool(size: number) {
  const url = await createTestDatabase()
  made.push(url)
  const h = openPg({ url, poolSize: size })
  await h.sql`CREATE TABLE t (x int PRIMARY KEY)`
  const db = routeToTransaction(h.db as never) as object
  const rows = async () => (await h.sql`SELECT x FROM t ORDER BY x`).map((r: { x: number }) => r.x)
  return { h, db, rows }
}

describe.skipIf(!PG_URL)(`PostgreSQL transactions${PG_SKIP}`, () => {
  test('the statements run inside one transaction: invisible to another connection until COMMIT, all of them after', async () => {
    const { h, db, rows } = await pool(2)
    try {
      let seenInside: number[] | undefined
      await withTransaction(db, async (tx) => {
        await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [1])
        await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [2])
        // The pool's other connection: outside a transaction, each insert would have committed on its own.
        seenInside = await rows()
      })
      expect(seenInside).toEqual([])
      expect(await rows()).toEqual([1, 2])
    } finally {
      await h.close()
    }
  })

  test('a throw rolls back every statement, and the connection serves the next transaction', async () => {
    const { h, db, rows } = await pool(1)
    try {
      const err = await withTransaction(db, async (tx) => {
        await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [3])
        throw new Error('no')
      }).catch((e: Error) => e)
      expect((err as Error).message).toBe('no')
      await withTransaction(db, async (tx) => void (await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [4])))
      expect(await rows()).toEqual([4])
    } finally {
      await h.close()
    }
  })

  test('a failed statement whose error the callback swallowed makes the transaction fail, not pass for a commit', async () => {
    const { h, db, rows } = await pool(1)
    try {
      const err = await withTransaction(db, async (tx) => {
        await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [5])
        // PostgreSQL now answers COMMIT with the tag ROLLBACK, and no error: Bun's client raises it.
        await pgRaw(tx, 'SELECT 1 / 0').catch(() => {})
      }).then(
        () => undefined,
        (e: Error) => e,
      )
      expect(err).toBeInstanceOf(Error)
      expect(await rows()).toEqual([])
      await withTransaction(db, async (tx) => void (await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [6])))
      expect(await rows()).toEqual([6])
    } finally {
      await h.close()
    }
  })

  test('end hooks run once per transaction with whether it committed; none outside a transaction', async () => {
    const { h, db } = await pool(1)
    try {
      const ends: boolean[] = []
      expect(whenTransactionEnds(() => ends.push(true))).toBe(false)
      await withTransaction(db, async (tx) => {
        expect(whenTransactionEnds((c) => ends.push(c))).toBe(true)
        await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [7])
      })
      await withTransaction(db, async (tx) => {
        whenTransactionEnds((c) => ends.push(c))
        await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [7]) // duplicate key: the transaction fails
      }).catch(() => {})
      expect(ends).toEqual([true, false])
    } finally {
      await h.close()
    }
  })
})
