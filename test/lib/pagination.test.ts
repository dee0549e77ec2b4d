/** The page-size helper is the second line behind the query schema: it refuses bad sizes by itself. */
import { describe, expect, test } from 'bun:test'
import { AppError } from '../../src/lib/errors'
import { decodeCursor, pageLimit } from '../../src/lib/pagination'
import { makeAdminApp, seedUser } from '../support/admin'

function thrown(fn: () => unknown): AppError {
  try {
    fn()
  } catch (e) {
    if (e instanceof AppError) return e
    throw e
  }
  throw new Error('expected an AppError')
}

// What a handler receives when a build stops the schema from checking: raw strings, and numbers that
// JSON or Number() could produce.
const BAD: unknown[] = [0, -1, 101, 100_000, 1.5, Number.POSITIVE_INFINITY, Number.NaN, 2 ** 53 + 1, '0', '-1', '101', '100000', '1.5', '1e1', '0x10', ' 5', '+5', '', 'abc', null, true, [5], { n: 5 }]
const GOOD: [unknown, number][] = [
  [undefined, 20],
  [1, 1],
  [100, 100],
  ['1', 1],
  ['100', 100],
  ['05', 5],
]

describe('pageLimit', () => {
  test.each(BAD.map((v) => [v]))('refuses %p with 422 validation_failed naming /limit', (v) => {
    const e = thrown(() => pageLimit(v))
    expect({ status: e.status, code: e.code, path: e.extra?.errors?.[0]?.path }).toEqual({ status: 422, code: 'validation_failed', path: '/limit' })
  })
  test.each(GOOD)('accepts %p as %p', (v, n) => expect(pageLimit(v)).toBe(n))
})

describe('decodeCursor', () => {
  const key = Buffer.alloc(32, 7)
  test.each([[''], ['x'.repeat(513)], [5], [null]])('refuses %p as 400 invalid_cursor', (c) => {
    const e = thrown(() => decodeCursor(key, c as string, (v): v is unknown => true))
    expect({ status: e.status, code: e.code }).toEqual({ status: 400, code: 'invalid_cursor' })
  })
})

describe('the users list (a service, called directly)', () => {
  test.each([[0], [-1], [101], [1.5], ['0'], ['100000']])('limit %p is refused before any query', async (limit) => {
    const t = await makeAdminApp()
    try {
      await seedUser(t.deps)
      const e = await t.deps.usersAdmin.list({ limit: limit as number }).then(() => { throw new Error("accepted") }, (err: { status: number; code: string }) => err)
      expect({ status: e.status, code: e.code }).toEqual({ status: 422, code: 'validation_failed' })
      expect((await t.deps.usersAdmin.list({ limit: 1 })).items).toHaveLength(1)
    } finally {
      await t.close()
    }
  })
})
