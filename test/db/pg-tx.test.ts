/**
 * PostgreSQL transactions as `withTransaction` runs them (src/db/pg/client.ts pipelineTransactions): a reserved
 * connection, a prepared BEGIN sent with the first statement, COMMIT checked, ROLLBACK on a throw, the connection
 * back in the pool either way; and the end hooks of src/db/tx.ts. openPg directly, on a database of its own.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { openPg, RolledBack } from '../../src/db/pg/client'
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
        // The pool's other connection: with no BEGIN in effect, each insert would have committed on its own.
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

  test('a failed statement whose error the callback swallowed makes the transaction fail with RolledBack, not pass for a commit', async () => {
    const { h, db, rows } = await pool(1)
    try {
      const err = await withTransaction(db, async (tx) => {
        await pgRaw(tx, 'INSERT INTO t VALUES ($1)', [5])
        // PostgreSQL now answers COMMIT with the tag ROLLBACK, and no error.
        await pgRaw(tx, 'SELECT 1 / 0').catch(() => {})
      }).catch((e: Error) => e)
      expect(err).toBeInstanceOf(RolledBack)
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
