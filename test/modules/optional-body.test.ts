/** Regression (found by test/binary/fuzz.test.ts): an optional body that is not an object skipped validation. */
import { afterAll, describe, expect, test } from 'bun:test'
import { expectProblem, makeApp } from '../helpers'

describe('optional JSON bodies (refresh, passkey options)', () => {
  const a = makeApp()
  afterAll(() => a.close())
  const send = (path: string, raw?: string) => a.req('POST', path, { raw, headers: raw === undefined ? {} : { 'content-type': 'application/json' } })

  for (const raw of ['7', '[]', '"x"', 'true', '{"fuzzExtra":1}']) {
    test(`${raw} is a 422, not "no body"`, async () => {
      expectProblem(await send('/v1/auth/passkey/options', raw), 422, 'validation_failed')
      expectProblem(await send('/v1/auth/refresh', raw), 422, 'validation_failed')
    })
  }

  test('no body, null and {} still mean "no body"', async () => {
    for (const raw of [undefined, 'null', '{}']) {
      expect((await send('/v1/auth/passkey/options', raw)).status).toBe(200)
      expectProblem(await send('/v1/auth/refresh', raw), 401, 'invalid_refresh_token')
    }
  })
})
