/**
 * The role service refuses malformed roles by itself (422 `validation_failed`, nothing written), so a
 * route schema that stops checking — identifier minification once made every bound pass — cannot store
 * `{"level":"-50"}`. These call the service directly with what such a handler would receive.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { AppError } from '../../src/lib/errors'
import { MAX_LEVEL } from '../../src/modules/rbac/service'
import type { TestApp } from '../helpers'
import { makeAdminApp, seedUser } from '../support/admin'
import { tableCounts } from '../support/sql'

let t: TestApp
let owner: string

beforeAll(async () => {
  t = await makeAdminApp()
  owner = await seedUser(t.deps, { roles: ['owner'] })
  await t.deps.rbac.createRole({ userId: owner }, { name: 'editor', level: 40, permissions: ['users:read'] })
})
afterAll(() => t.close())

/** Row counts of every table: what "nothing written" is checked against. */
const counts = () => tableCounts(t.deps)

async function thrown(fn: () => unknown): Promise<AppError> {
  try {
    await fn()
  } catch (e) {
    if (e instanceof AppError) return e
    throw e
  }
  throw new Error('expected an AppError')
}

const valid = { name: 'helper', level: 30, permissions: ['users:read'] }

/** Field → values the service must refuse, and the error path it must name. */
const BAD_FIELDS: { field: string; values: unknown[]; path?: (i: number) => string }[] = [
  { field: 'level', values: [-1, -50, '-50', '5', MAX_LEVEL + 1, 1.5, Number.POSITIVE_INFINITY, Number.NaN, 2 ** 53 + 1, null, true, [5]] },
  { field: 'name', values: ['', 'a', 'A-role', '9lives', 'x'.repeat(33), 'has space', 'évé', 5, null, ['helper']] },
  { field: 'permissions', values: ['users:read', null, { 0: 'users:read' }, Array.from({ length: 101 }, () => 'users:read')] },
  { field: 'description', values: ['d'.repeat(501), 5, null] },
  { field: 'mfaRequired', values: ['true', 1, null] },
]
const CASES = BAD_FIELDS.flatMap(({ field, values }) => values.map((v) => ({ field, value: v })))
const label = (v: unknown) => (typeof v === 'string' && v.length > 20 ? `${v.slice(0, 8)}…(${v.length})` : Array.isArray(v) && v.length > 5 ? `[${v.length} items]` : JSON.stringify(v) ?? String(v))

describe('createRole refuses a malformed field with 422 and writes nothing', () => {
  test.each(CASES.map((c) => [c.field, label(c.value), c]))('%s = %s', async (_f, _l, c) => {
    const before = await counts()
    const e = await thrown(async () => await t.deps.rbac.createRole({ userId: owner }, { ...valid, [c.field]: c.value } as never))
    expect({ status: e.status, code: e.code }).toEqual({ status: 422, code: 'validation_failed' })
    expect(e.extra?.errors?.some((x) => x.path === `/${c.field}` || x.path.startsWith(`/${c.field}/`))).toBe(true)
    expect(await counts()).toEqual(before)
  })
  test('bad permission items are named by index', async () => {
    const e = await thrown(async () => await t.deps.rbac.createRole({ userId: owner }, { ...valid, permissions: ['users:read', 'x', 7 as never] }))
    expect(e.extra?.errors?.map((x) => x.path)).toEqual(['/permissions/1', '/permissions/2'])
  })
  test('a missing or unknown field is refused', async () => {
    const before = await counts()
    for (const input of [{ name: 'helper', permissions: [] }, { level: 5, permissions: [] }, { name: 'helper', level: 5 }, { ...valid, builtin: true }, null, 'helper', []]) {
      const e = await thrown(async () => await t.deps.rbac.createRole({ userId: owner }, input as never))
      expect({ status: e.status, code: e.code }).toEqual({ status: 422, code: 'validation_failed' })
    }
    expect(await counts()).toEqual(before)
  })
  test('the valid input is accepted (the cases above differ from it in one field only)', async () => {
    expect((await t.deps.rbac.createRole({ userId: owner }, { ...valid, name: 'helper-ok' })).level).toBe(30)
    expect((await t.deps.rbac.createRole({ userId: owner }, { ...valid, name: 'floor', level: 0 })).level).toBe(0)
  })
})

describe('patchRole refuses a malformed field with 422 and writes nothing', () => {
  test.each(CASES.map((c) => [c.field, label(c.value), c]))('%s = %s', async (_f, _l, c) => {
    const before = await counts()
    const e = await thrown(async () => await t.deps.rbac.patchRole({ userId: owner }, 'editor', { [c.field]: c.value } as never))
    expect({ status: e.status, code: e.code }).toEqual({ status: 422, code: 'validation_failed' })
    expect(await counts()).toEqual(before)
    expect(await t.deps.rbac.getRole('editor')).toMatchObject({ name: 'editor', level: 40, permissions: ['users:read'] })
  })
  test('an empty patch and an unknown field are refused', async () => {
    for (const patch of [{}, { builtin: true }, { level: undefined }]) {
      const e = await thrown(async () => await t.deps.rbac.patchRole({ userId: owner }, 'editor', patch as never))
      expect({ status: e.status, code: e.code }).toEqual({ status: 422, code: 'validation_failed' })
    }
  })
  test('a valid patch still works', async () => {
    expect((await t.deps.rbac.patchRole({ userId: owner }, 'editor', { level: 41 })).level).toBe(41)
  })
})
