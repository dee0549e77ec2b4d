/** Regressions found by test/binary/fuzz.test.ts. */
import { afterAll, describe, expect, test } from 'bun:test'
import { expectProblem, makeApp } from '../helpers'
import { makeAdminApp, seedUser } from '../support/admin'

describe('optional JSON bodies (refresh, passkey options)', async () => {
  const a = await makeApp()
  afterAll(() => a.close())
  const send = (path: string, raw?: string) => a.req('POST', path, { raw, headers: raw === undefined ? {} : { 'content-type': 'application/json' } })

  // A literal `null` is not "no body" either: a JSON root that is not an object is refused (README: API conventions).
  for (const raw of ['7', '[]', '"x"', 'true', 'null', '{"fuzzExtra":1}']) {
    test(`${raw} is a 422, not "no body"`, async () => {
      expectProblem(await send('/v1/auth/passkey/options', raw), 422, 'validation_failed')
      expectProblem(await send('/v1/auth/refresh', raw), 422, 'validation_failed')
    })
  }

  test('no body and {} still mean "no body"', async () => {
    for (const raw of [undefined, '{}']) {
      expect((await send('/v1/auth/passkey/options', raw)).status).toBe(200)
      expectProblem(await send('/v1/auth/refresh', raw), 401, 'invalid_refresh_token')
    }
  })
})

describe('integers in JSON bodies are numbers, not numeric strings', async () => {
  const a = await makeAdminApp()
  const owner = await seedUser(a.deps, { roles: ['owner'] })
  afterAll(() => a.close())
  let n = 0
  const create = (level: unknown) => a.as(owner, 'POST', '/v1/roles', { body: { name: `fuzz-level-${++n}`, level, permissions: [] } })

  for (const level of ['5', ' 5', '5.5', '5000']) {
    test(`level ${JSON.stringify(level)} is a 422`, async () => {
      expectProblem(await create(level), 422, 'validation_failed')
    })
  }

  test('level 5 is accepted', async () => {
    const r = await create(5)
    expect(r.status).toBe(201)
    expect(r.body.level).toBe(5)
  })
})
