/** Strict query strings (src/plugins/strict-input.ts) through app.handle; the binary suite repeats them over sockets. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { querySpec, queryProblems } from '../../src/plugins/strict-input'
import { expectProblem, makeApp, signUp, type TestApp } from '../helpers'
import { sqlCount } from '../support/sql'

let t: TestApp
let token: string
beforeAll(async () => {
  t = await makeApp()
  token = (await signUp(t)).accessToken
})
afterAll(() => t.close())

describe('over HTTP', () => {
  test.each([
    ['/v1/me/events?limit=1&limit=2', '/limit'],
    ['/v1/me/events?cursor=a&cursor=b', '/cursor'],
    ['/v1/me/events?limit=0x10', '/limit'],
    ['/v1/me/events?limit=1e1', '/limit'],
    ['/v1/me/events?limit=%205', '/limit'],
    ['/v1/me/events?limit=%2B5', '/limit'],
    ['/v1/me/events?limit=%E0%A4%A', '/limit'],
    ['/v1/me/events?limit=0', '/limit'],
    ['/v1/me/events?limit=101', '/limit'],
    ['/v1/me/events?limit=-1', '/limit'],
    ['/v1/me/events?extra=1', '/extra'],
    ['/v1/me?x=1', '/x'],
    ['/v1/me/sessions?limit=5', '/limit'],
    ['/health/live?probe', '/probe'],
  ])('%s → 422 naming %s', async (path, field) => {
    const r = await t.req('GET', path, { token })
    const p = expectProblem(r, 422, 'validation_failed')
    expect(p.errors.map((e: { path: string }) => e.path)).toContain(field)
  })
  test.each(['/v1/me/events?limit=5', '/v1/me/events?limit=05&', '/v1/me/events?', '/v1/me?', '/health/live'])('%s is fine', async (path) => {
    expect((await t.req('GET', path, { token })).status).toBe(200)
  })
  test('HEAD follows the GET route', async () => {
    const r = await t.handle(new Request('http://localhost/health/live?x=1', { method: 'HEAD' }))
    expect(r.status).toBe(422)
  })
})

describe('a JSON body must be an object', () => {
  const challenges = () => sqlCount(t.deps, 'SELECT count(*) AS n FROM challenges')
  test.each(['[]', '"text"', '5', 'null', 'true'])('POST /v1/auth/passkey/options with %s → 422, no challenge stored', async (raw) => {
    const before = await challenges()
    const r = await t.req('POST', '/v1/auth/passkey/options', { raw, headers: { 'content-type': 'application/json' } })
    expectProblem(r, 422, 'validation_failed')
    expect(await challenges()).toBe(before)
  })
  test.each(['[]', 'null'])('POST /v1/auth/refresh with %s → 422 (not a missing token)', async (raw) => {
    expectProblem(await t.req('POST', '/v1/auth/refresh', { raw, headers: { 'content-type': 'application/json' } }), 422, 'validation_failed')
  })
  test('an object, or no body at all, is still fine', async () => {
    expect((await t.req('POST', '/v1/auth/passkey/options', { body: {} })).status).toBe(200)
    expect((await t.req('POST', '/v1/auth/passkey/options')).status).toBe(200)
    expect((await t.req('POST', '/v1/auth/refresh')).body.code).toBe('invalid_refresh_token')
  })
})

describe('queryProblems', () => {
  const spec = querySpec({ properties: { limit: { anyOf: [{ type: 'string' }, { type: 'integer' }] }, n: { type: 'number', multipleOf: 1 }, x: { type: 'number' }, q: { type: 'string' } } })
  test.each([
    ['limit=1&q=a+b&x=1.5&n=3', 0],
    ['limit=1.5', 1],
    ['n=1.5', 1],
    ['x=1e3', 1],
    ['q=a&q=a', 1],
    ['Limit=1', 1],
    ['li%6Dit=1&limit=2', 1],
    ['x=-0.5', 0],
  ])('%s → %p problems', (raw, n) => expect(queryProblems(raw, spec)).toHaveLength(n))
  test('names are escaped for the JSON pointer and never carry the value', () => {
    const [e] = queryProblems('a%2Fb~c=secret', spec)
    expect(e!.path).toBe('/a~1b~0c')
    expect(JSON.stringify(e)).not.toContain('secret')
  })
})
