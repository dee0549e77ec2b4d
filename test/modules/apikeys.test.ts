/** Personal API keys: format, hash-only storage, scope ⊆ owner, expiry, revocation, credential routes refused. */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { eq } from 'drizzle-orm'
import { apiKeys } from '../../src/db/tables'
import { isWellFormedKey } from '../../src/modules/apikeys/format'
import { expectProblem } from '../helpers'
import { eventsOf, makeAdminApp, seedUser } from '../support/admin'
import { sqlCount, sqlRows } from '../support/sql'

let t: Awaited<ReturnType<typeof makeAdminApp>>
let owner: string

beforeEach(async () => {
  t = await makeAdminApp()
  owner = await seedUser(t.deps, { roles: ['user', 'owner'] })
})
afterEach(() => t.close())

const newKey = async (userId: string, body: Record<string, unknown> = {}) => {
  const r = await t.as(userId, 'POST', '/v1/me/api-keys', { body: { name: 'ci', ...body } })
  expect(r.status).toBe(201)
  return r.body as { id: string; key: string; permissions: string[] | null; expiresAt: string }
}
const withKey = (key: string, method: string, path: string, body?: unknown) => t.req(method, path, { token: key, body })

describe('format and storage', () => {
  test('bwk_ + 36 base62 with a CRC32 checksum; a one-character change fails the checksum', async () => {
    const { key } = await newKey(owner)
    expect(key).toMatch(/^bwk_[0-9A-Za-z]{36}$/)
    expect(isWellFormedKey(key)).toBe(true)
    const last = key.at(-1) === 'A' ? 'B' : 'A'
    expect(isWellFormedKey(key.slice(0, -1) + last)).toBe(false)
    expect(isWellFormedKey(`bwk_${'x'.repeat(36)}`)).toBe(false)
  })

  test('the key never appears in the database, only its keyed hash; it is shown once', async () => {
    const { key, id } = await newKey(owner)
    const dump = await sqlRows(t.deps, 'SELECT * FROM api_keys')
    expect(JSON.stringify(dump)).not.toContain(key)
    expect(JSON.stringify(dump)).not.toContain(key.slice(10))
    const events = JSON.stringify(await sqlRows(t.deps, 'SELECT * FROM security_events'))
    expect(events).not.toContain(key.slice(10))
    const list = await t.as(owner, 'GET', '/v1/me/api-keys')
    expect(list.body.items.map((k: any) => k.id)).toEqual([id])
    expect(list.text).not.toContain(key.slice(10))
    expect(list.body.items[0].hint).toBe(key.slice(0, 10))
  })
})

describe('using a key', () => {
  test('Bearer bwk_ works on /v1/me; a wrong key is 401; revoking makes the next request 401', async () => {
    const { key, id } = await newKey(owner)
    const me = await withKey(key, 'GET', '/v1/me')
    expect(me.status).toBe(200)
    expect(me.body.id).toBe(owner)
    const bad = key.slice(0, 10) + (key[10] === 'a' ? 'b' : 'a') + key.slice(11)
    expectProblem(await withKey(bad, 'GET', '/v1/me'), 401, 'invalid_token')
    expect((await t.as(owner, 'DELETE', `/v1/me/api-keys/${id}`)).status).toBe(204)
    expectProblem(await withKey(key, 'GET', '/v1/me'), 401, 'invalid_token')
    expect((await eventsOf(t.deps, 'api_key_revoked')).length).toBe(1)
  })

  test('a scoped key holds only its patterns; a key cannot be given more than its owner holds', async () => {
    const { key } = await newKey(owner, { permissions: ['users:read'] })
    expect((await withKey(key, 'GET', '/v1/me')).body.permissions).toEqual(['users:read'])
    expect((await withKey(key, 'GET', '/v1/users')).status).toBe(200)
    expectProblem(await withKey(key, 'GET', '/v1/roles'), 403, 'forbidden')
    const plain = await seedUser(t.deps)
    expectProblem(await t.as(plain, 'POST', '/v1/me/api-keys', { body: { name: 'x', permissions: ['users:read'] } }), 403, 'forbidden')
    expectProblem(await t.as(plain, 'POST', '/v1/me/api-keys', { body: { name: 'x', permissions: ['nope:*'] } }), 422, 'invalid_permission')
    expect(await sqlCount(t.deps, 'SELECT count(*) AS n FROM api_keys WHERE user_id = ?', [plain])).toBe(0)
  })

  test('owner downgrade: the key loses what its owner loses, at once; a disabled owner\'s key stops', async () => {
    const mod = await seedUser(t.deps, { roles: ['user', 'moderator'] })
    const { key } = await newKey(mod, { permissions: ['users:read', 'files:read:own'] })
    expect((await withKey(key, 'GET', '/v1/users')).status).toBe(200)
    expect((await t.as(owner, 'DELETE', `/v1/users/${mod}/roles/moderator`)).status).toBe(204)
    expectProblem(await withKey(key, 'GET', '/v1/users'), 403, 'forbidden')
    expect((await withKey(key, 'GET', '/v1/me')).body.permissions).toEqual(['files:read:own'])
    expect((await t.as(owner, 'PATCH', `/v1/users/${mod}`, { body: { status: 'disabled' } })).status).toBe(200)
    expectProblem(await withKey(key, 'GET', '/v1/me'), 401, 'invalid_token')
  })

  test('expiry with the fake clock; default 90 days; last use recorded at most once a minute', async () => {
    const { key, id, expiresAt } = await newKey(owner, { expiresIn: '2h' })
    expect(Date.parse(expiresAt) - t.clock.now()).toBe(2 * 3_600_000)
    expect(Date.parse((await newKey(owner)).expiresAt) - t.clock.now()).toBe(90 * 86_400_000)
    expect((await withKey(key, 'GET', '/v1/me')).status).toBe(200)
    const lastUsed = async () => (await t.deps.db.select({ v: apiKeys.lastUsedAt }).from(apiKeys).where(eq(apiKeys.id, id)))[0]!.v
    const first = await lastUsed()
    expect(first).toBe(t.clock.now())
    t.clock.advance(30_000)
    await withKey(key, 'GET', '/v1/me')
    expect(await lastUsed()).toBe(first)
    t.clock.advance(31_000)
    await withKey(key, 'GET', '/v1/me')
    expect(await lastUsed()).toBe(t.clock.now())
    t.clock.advance(2 * 3_600_000)
    expectProblem(await withKey(key, 'GET', '/v1/me'), 401, 'invalid_token')
    expectProblem(await t.as(owner, 'POST', '/v1/me/api-keys', { body: { name: 'x', expiresIn: '366d' } }), 422, 'validation_failed')
  })

  test('routes that change credentials refuse API keys', async () => {
    const { key, id } = await newKey(owner)
    for (const [method, path, body] of [
      ['POST', '/v1/me/api-keys', { name: 'again' }],
      ['DELETE', `/v1/me/api-keys/${id}`],
      ['GET', '/v1/api-keys'],
      ['POST', '/v1/me/password', { currentPassword: 'x', password: 'y' }],
      ['GET', '/v1/me/sessions'],
      ['POST', '/v1/me/mfa/totp'],
      ['POST', '/v1/auth/logout-all'],
      ['DELETE', `/v1/users/${owner}/sessions`],
    ] as const) {
      expectProblem(await withKey(key, method, path, body), 403, 'api_key_not_allowed')
    }
    expect((await withKey(key, 'GET', '/v1/me')).status).toBe(200)
  })

  test('authz check with the key as the subject token stays within the key scope', async () => {
    const admin = await seedUser(t.deps, { roles: ['user', 'admin'] })
    const { key } = await newKey(owner, { permissions: ['users:read'] })
    const ask = (permission: string, token = key) => t.as(admin, 'POST', '/v1/authz/check', { body: { token, permission } })
    expect((await ask('users:read')).body.allowed).toBe(true)
    expect((await ask('users:delete')).body).toEqual({ allowed: false, reason: 'users:delete is outside the API key scope' })
    expect((await ask('users:read', 'bwk_nonsense')).body).toEqual({ allowed: false, reason: 'invalid token' })
  })
})

describe('administration', () => {
  test('apikeys:read lists every key (metadata only); apikeys:write revokes anyone\'s; others get 403/404', async () => {
    const admin = await seedUser(t.deps, { roles: ['user', 'admin'] })
    const plain = await seedUser(t.deps)
    const a = await newKey(plain)
    await newKey(owner)
    const all = await t.as(admin, 'GET', '/v1/api-keys')
    expect(all.status).toBe(200)
    expect(all.body.items.length).toBe(2)
    expect(all.text).not.toContain(a.key.slice(10))
    expectProblem(await t.as(plain, 'GET', '/v1/api-keys'), 403, 'forbidden')
    expectProblem(await t.as(owner, 'DELETE', `/v1/me/api-keys/${a.id}`), 404, 'not_found')
    expect((await t.as(admin, 'DELETE', `/v1/api-keys/${a.id}`)).status).toBe(204)
    expectProblem(await withKey(a.key, 'GET', '/v1/me'), 401, 'invalid_token')
    expect(t.deps.introspectApiKey !== undefined).toBe(true)
  })

  test('introspectApiKey / revokeApiKey for the OAuth endpoints', async () => {
    const { key, id } = await newKey(owner, { permissions: ['users:read'] })
    expect(await t.deps.introspectApiKey(key)).toMatchObject({ active: true, sub: owner, scope: 'users:read', token_type: 'api_key', key_id: id })
    expect(await t.deps.revokeApiKey(key)).toBe(true)
    expect(await t.deps.introspectApiKey(key)).toEqual({ active: false })
    expect(await t.deps.revokeApiKey('bwk_short')).toBe(false)
  })
})
