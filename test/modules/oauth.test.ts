/** OAuth clients and the OAuth endpoints through app.handle: scope limits, escalation, secret rotation, replayed assertions. */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { expectProblem, makeApp, sharedDatabase, signUp } from '../helpers'
import { makeAdminApp, seedUser } from '../support/admin'

let t: Awaited<ReturnType<typeof makeAdminApp>>
let owner: string

beforeEach(async () => {
  t = await makeAdminApp()
  owner = await seedUser(t.deps, { roles: ['user', 'owner'] })
})
afterEach(() => t.close())

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString()
const basic = (id: string, secret: string) => `Basic ${btoa(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`)}`
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

async function createClient(as: string, body: Record<string, unknown>) {
  return t.as(as, 'POST', '/v1/clients', { body })
}

async function tokenFor(id: string, secret: string, fields: Record<string, string> = {}) {
  return t.req('POST', '/oauth/token', { raw: form({ grant_type: 'client_credentials', ...fields }), headers: { ...FORM, authorization: basic(id, secret) } })
}

describe('client credentials', () => {
  test('a client gets an at+jwt token for what it holds; scope beyond it is invalid_scope; the token calls /v1/authz/check', async () => {
    const c = await createClient(owner, { name: 'svc', roles: ['service'], permissions: ['users:read'] })
    expect(c.status).toBe(201)
    expect(c.body.clientSecret).toStartWith('bwcs_')
    const tok = await tokenFor(c.body.clientId, c.body.clientSecret)
    expect(tok.status).toBe(200)
    expect(tok.headers.get('cache-control')).toBe('no-store')
    expect(tok.body.scope.split(' ').sort()).toEqual(['authz:check', 'users:read'])
    const header = JSON.parse(atob(tok.body.access_token.split('.')[0]))
    expect(header.typ).toBe('at+jwt')
    const narrow = await tokenFor(c.body.clientId, c.body.clientSecret, { scope: 'users:read' })
    expect(narrow.body.scope).toBe('users:read')
    const more = await tokenFor(c.body.clientId, c.body.clientSecret, { scope: 'users:read users:delete' })
    expect(more.status).toBe(400)
    expect(more.body.error).toBe('invalid_scope')
    expect(more.headers.get('content-type')).toStartWith('application/json')
    const check = await t.req('POST', '/v1/authz/check', { token: tok.body.access_token, body: { userId: owner, permission: 'users:read' } })
    expect(check.status).toBe(200)
    expect(check.body.allowed).toBe(true)
    // The narrowed token lacks authz:check.
    expectProblem(await t.req('POST', '/v1/authz/check', { token: narrow.body.access_token, body: { userId: owner, permission: 'users:read' } }), 403, 'forbidden')
    // "Me" routes refuse client tokens.
    expectProblem(await t.req('GET', '/v1/me', { token: tok.body.access_token }), 403, 'forbidden')
  })

  test('wrong secret over Basic: 401 invalid_client with WWW-Authenticate: Basic; JSON bodies and unknown grants are refused in the OAuth shape', async () => {
    const c = await createClient(owner, { name: 'svc', permissions: ['users:read'] })
    const bad = await tokenFor(c.body.clientId, 'bwcs_wrong')
    expect(bad.status).toBe(401)
    expect(bad.body).toMatchObject({ error: 'invalid_client' })
    expect(bad.headers.get('www-authenticate')).toStartWith('Basic')
    const json = await t.req('POST', '/oauth/token', { body: { grant_type: 'client_credentials' } })
    expect({ status: json.status, error: json.body.error }).toEqual({ status: 400, error: 'invalid_request' })
    const grant = await t.req('POST', '/oauth/token', { raw: form({ grant_type: 'password' }), headers: { ...FORM, authorization: basic(c.body.clientId, c.body.clientSecret) } })
    expect(grant.body.error).toBe('unsupported_grant_type')
    const dup = await t.req('POST', '/oauth/token', { raw: 'grant_type=client_credentials&grant_type=client_credentials', headers: { ...FORM, authorization: basic(c.body.clientId, c.body.clientSecret) } })
    expect(dup.body.error).toBe('invalid_request')
    // client_secret_post is refused for a Basic client (one registered method).
    const post = await t.req('POST', '/oauth/token', { raw: form({ grant_type: 'client_credentials', client_id: c.body.clientId, client_secret: c.body.clientSecret }), headers: FORM })
    expect(post.status).toBe(401)
  })

  test('a deleted or disabled client: its token stops working at once and introspects inactive', async () => {
    const c = await createClient(owner, { name: 'svc', roles: ['service'] })
    const tok = (await tokenFor(c.body.clientId, c.body.clientSecret)).body.access_token
    const rs = await createClient(owner, { name: 'rs', authMethod: 'client_secret_post' })
    const introspect = async () =>
      (await t.req('POST', '/oauth/introspect', { raw: form({ token: tok, client_id: rs.body.clientId, client_secret: rs.body.clientSecret }), headers: FORM })).body
    expect(await introspect()).toMatchObject({ active: true, client_id: c.body.clientId, sub: c.body.clientId, scope: 'authz:check' })
    expect((await t.as(owner, 'PATCH', `/v1/clients/${c.body.clientId}`, { body: { status: 'disabled' } })).status).toBe(200)
    expect(await introspect()).toEqual({ active: false })
    expectProblem(await t.req('POST', '/v1/authz/check', { token: tok, body: { userId: owner, permission: 'users:read' } }), 401, 'invalid_token')
    await t.as(owner, 'PATCH', `/v1/clients/${c.body.clientId}`, { body: { status: 'active' } })
    expect((await introspect()).active).toBe(true)
    expect((await t.as(owner, 'DELETE', `/v1/clients/${c.body.clientId}`)).status).toBe(204)
    expect(await introspect()).toEqual({ active: false })
  })
})

describe('listing clients', () => {
  test('GET /v1/clients pages newest first by (createdAt, id): clients created in the same millisecond are each listed once, in id order', async () => {
    const made: { id: string; at: number }[] = []
    for (let i = 0; i < 7; i++) {
      if (i === 5) t.clock.advance(1000)
      const c = await createClient(owner, { name: `svc-${i}`, permissions: ['users:read'] })
      expect(c.status).toBe(201)
      made.push({ id: c.body.clientId, at: t.clock.now() })
    }
    const seen: string[] = []
    let cursor: string | null = null
    for (let page = 0; page < 10; page++) {
      const r = await t.as(owner, 'GET', `/v1/clients?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      expect(r.status).toBe(200)
      seen.push(...r.body.items.map((x: { clientId: string }) => x.clientId))
      cursor = r.body.nextCursor
      if (!cursor) break
    }
    const expected = [...made].sort((x, y) => y.at - x.at || (x.id < y.id ? 1 : x.id > y.id ? -1 : 0)).map((x) => x.id)
    expect(seen).toEqual(expected)
  })
})

describe('escalation', () => {
  test('a creator cannot give a client a role at or above their level or a permission they lack', async () => {
    await t.deps.rbac.createRole({ userId: owner }, { name: 'ops', level: 80, permissions: ['clients:write', 'users:read', 'authz:check'], mfaRequired: true })
    const admin = await seedUser(t.deps, { roles: ['user', 'ops'] })
    expectProblem(await createClient(admin, { name: 'x', roles: ['admin'] }), 403, 'forbidden')
    expectProblem(await createClient(admin, { name: 'x', roles: ['ops'] }), 403, 'forbidden')
    expectProblem(await createClient(admin, { name: 'x', permissions: ['users:read', 'audit:read'] }), 403, 'forbidden')
    expectProblem(await createClient(admin, { name: 'x', permissions: ['*:*'] }), 403, 'forbidden')
    const ok = await createClient(admin, { name: 'x', roles: ['service'], permissions: ['users:read'] })
    expect(ok.status).toBe(201)
    // An admin cannot rotate or delete a client that holds more than they do (owner-made, *:*).
    const big = await createClient(owner, { name: 'big', permissions: ['*:*'] })
    expect(big.status).toBe(201)
    expectProblem(await t.as(admin, 'POST', `/v1/clients/${big.body.clientId}/secret`, { body: {} }), 403, 'forbidden')
    expectProblem(await t.as(admin, 'DELETE', `/v1/clients/${big.body.clientId}`), 403, 'forbidden')
    // Without clients:write nothing at all.
    const plain = await seedUser(t.deps)
    expectProblem(await createClient(plain, { name: 'x' }), 403, 'forbidden')
  })
})

describe('secret rotation', () => {
  test('the previous secret works for the overlap and not after it (fake clock); the overlap is bounded', async () => {
    const c = await createClient(owner, { name: 'svc', roles: ['service'] })
    const r = await t.as(owner, 'POST', `/v1/clients/${c.body.clientId}/secret`, { body: { overlap: '24h' } })
    expect(r.status).toBe(200)
    expect(r.body.clientSecret).not.toBe(c.body.clientSecret)
    expect((await tokenFor(c.body.clientId, c.body.clientSecret)).status).toBe(200)
    expect((await tokenFor(c.body.clientId, r.body.clientSecret)).status).toBe(200)
    t.clock.advance(24 * 3_600_000 + 1)
    expect((await tokenFor(c.body.clientId, c.body.clientSecret)).status).toBe(401)
    expect((await tokenFor(c.body.clientId, r.body.clientSecret)).status).toBe(200)
    expectProblem(await t.as(owner, 'POST', `/v1/clients/${c.body.clientId}/secret`, { body: { overlap: '8d' } }), 422, 'validation_failed')
    // Without an overlap the old secret stops at once.
    const r2 = await t.as(owner, 'POST', `/v1/clients/${c.body.clientId}/secret`, { body: {} })
    expect((await tokenFor(c.body.clientId, r.body.clientSecret)).status).toBe(401)
    expect((await tokenFor(c.body.clientId, r2.body.clientSecret)).status).toBe(200)
  })
})

describe('private_key_jwt', () => {
  test('an assertion works once: a replayed jti is invalid_client; a long-lived or foreign-audience one too; private keys are refused at registration', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const pub = { ...(await exportJWK(publicKey)), alg: 'ES256', kid: 'k1' }
    const priv = await exportJWK(privateKey)
    expectProblem(await createClient(owner, { name: 'jwt', authMethod: 'private_key_jwt', jwks: { keys: [{ ...priv, kid: 'k1' }] } }), 422, 'validation_failed')
    const c = await createClient(owner, { name: 'jwt', authMethod: 'private_key_jwt', roles: ['service'], jwks: { keys: [pub] } })
    expect(c.status).toBe(201)
    expect(c.body.clientSecret).toBeNull()
    const id = c.body.clientId as string
    const now = Math.floor(t.clock.now() / 1000)
    const assertion = (o: { jti: string; exp?: number; aud?: string }) =>
      new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(id).setSubject(id).setAudience(o.aud ?? 'http://localhost:3000/oauth/token').setIssuedAt(now).setExpirationTime(o.exp ?? now + 60).setJti(o.jti).sign(privateKey)
    const send = async (a: string) =>
      t.req('POST', '/oauth/token', { raw: form({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: a }), headers: FORM })
    const a1 = await assertion({ jti: 'one' })
    const first = await send(a1)
    expect(first.status).toBe(200)
    expect(first.body.scope).toBe('authz:check')
    const replay = await send(a1)
    expect({ status: replay.status, error: replay.body.error }).toEqual({ status: 401, error: 'invalid_client' })
    expect((await send(await assertion({ jti: 'two', exp: now + 3600 }))).status).toBe(401)
    expect((await send(await assertion({ jti: 'three', aud: 'https://elsewhere.example' }))).status).toBe(401)
    expect((await send(await assertion({ jti: 'four', aud: t.deps.config.publicUrl }))).status).toBe(200)
  })
})

describe('introspection and revocation of user tokens', () => {
  test('a user access token is active until logout; revoking the refresh token ends the session; unknown tokens revoke with 200', async () => {
    const rs = await createClient(owner, { name: 'rs', authMethod: 'client_secret_post' })
    const auth = { client_id: rs.body.clientId, client_secret: rs.body.clientSecret }
    const reg = await t.req('POST', '/v1/auth/register', { body: { email: 'u@example.com', password: 'correct horse battery staple 42' } })
    expect(reg.status).toBe(201)
    const login = (await t.req('POST', '/v1/auth/login', { body: { email: 'u@example.com', password: 'correct horse battery staple 42' } })).body
    const intro = async (token: string) => (await t.req('POST', '/oauth/introspect', { raw: form({ token, ...auth }), headers: FORM })).body
    expect(await intro(login.accessToken)).toMatchObject({ active: true, sub: reg.body.user.id, token_type: 'Bearer' })
    expect(await intro(login.refreshToken)).toMatchObject({ active: true, token_type: 'refresh_token' })
    const rev = await t.req('POST', '/oauth/revoke', { raw: form({ token: login.refreshToken, token_type_hint: 'refresh_token', ...auth }), headers: FORM })
    expect(rev.status).toBe(200)
    expect(await intro(login.accessToken)).toEqual({ active: false })
    expect((await t.req('POST', '/oauth/revoke', { raw: form({ token: 'a'.repeat(43), ...auth }), headers: FORM })).status).toBe(200)
    expect((await t.req('POST', '/oauth/revoke', { raw: form({ token: 'x' }), headers: FORM })).status).toBe(401)
  })
})

describe('optional claims in user access tokens (BULWARK_TOKEN_CLAIMS)', () => {
  const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'))
  test('off by default; roles and permissions when configured; a claim over the maximum is left out whole', async () => {
    const plain = await signUp(t)
    expect(claimsOf(plain.accessToken)).not.toContainKeys(['roles', 'permissions', 'scope'])
    const on = await makeApp({ BULWARK_TOKEN_CLAIMS: 'roles,permissions,scope', BULWARK_TOKEN_CLAIMS_MAX: '3' })
    try {
      const u = await signUp(on)
      const c = claimsOf(u.accessToken)
      expect(c.roles).toEqual(['user'])
      expect(c.permissions).toEqual(['files:read:own', 'files:write:own', 'files:delete:own'])
      expect(c.scope).toBe('files:read:own files:write:own files:delete:own')
      const small = await makeApp({ BULWARK_TOKEN_CLAIMS: 'roles,permissions', BULWARK_TOKEN_CLAIMS_MAX: '2' })
      try {
        const v = claimsOf((await signUp(small)).accessToken)
        expect(v.roles).toEqual(['user'])
        expect(v.permissions).toBeUndefined()
      } finally {
        await small.close()
      }
    } finally {
      await on.close()
    }
  })
})

describe('API keys through the OAuth endpoints', () => {
  test('RFC 7662 introspects a live API key as active (token_type api_key, its owner and scope); RFC 7009 revokes it, after which it introspects inactive and is refused', async () => {
    const user = await seedUser(t.deps, { roles: ['user'] })
    const made = await t.as(user, 'POST', '/v1/me/api-keys', { body: { name: 'ci' } })
    expect(made.status).toBe(201)
    const key: string = made.body.key
    const rs = await createClient(owner, { name: 'rs', authMethod: 'client_secret_post' })
    const auth = { client_id: rs.body.clientId, client_secret: rs.body.clientSecret }
    const introspect = async () => (await t.req('POST', '/oauth/introspect', { raw: form({ token: key, ...auth }), headers: FORM })).body
    expect(await introspect()).toMatchObject({ active: true, sub: user, token_type: 'api_key' })
    expect((await t.req('GET', '/v1/me', { token: key })).status).toBe(200)
    expect((await t.req('POST', '/oauth/revoke', { raw: form({ token: key, ...auth }), headers: FORM })).status).toBe(200)
    expect(await introspect()).toEqual({ active: false })
    expectProblem(await t.req('GET', '/v1/me', { token: key }), 401)
  })
})

describe('a service client as the subject of POST /v1/authz/check', () => {
  test('its token answers for what the client holds within the token scope; a disabled client is an invalid token', async () => {
    const subject = await createClient(owner, { name: 'orders-svc', permissions: ['users:read'] })
    const narrow = (await tokenFor(subject.body.clientId, subject.body.clientSecret, { scope: 'users:read' })).body.access_token
    const caller = await createClient(owner, { name: 'gateway', roles: ['service'] })
    const callerToken = (await tokenFor(caller.body.clientId, caller.body.clientSecret)).body.access_token
    const check = async (permission: string) => (await t.req('POST', '/v1/authz/check', { token: callerToken, body: { token: narrow, permission } })).body
    expect(await check('users:read')).toMatchObject({ allowed: true })
    expect(await check('users:delete')).toMatchObject({ allowed: false })
    const batch = await t.req('POST', '/v1/authz/check', { token: callerToken, body: { checks: [{ token: narrow, permission: 'users:read' }, { token: narrow, permission: 'roles:write' }] } })
    expect(batch.body.results.map((r: { allowed: boolean }) => r.allowed)).toEqual([true, false])
    expect((await t.as(owner, 'PATCH', `/v1/clients/${subject.body.clientId}`, { body: { status: 'disabled' } })).status).toBe(200)
    expect(await check('users:read')).toEqual({ allowed: false, reason: 'invalid token' })
  })
})

describe('a client changed on another instance', () => {
  test('without Redis, a client disabled elsewhere loses its access here once BULWARK_CACHE_TTL has passed; dropping the cache (what the relay resync does) ends it at once', async () => {
    const { env, drop } = await sharedDatabase('bw-clients-')
    const a = await makeAdminApp(env)
    const b = await makeAdminApp(env)
    try {
      b.clock.set(a.clock.now())
      const admin = await seedUser(a.deps, { roles: ['user', 'owner'] })
      const c = await a.as(admin, 'POST', '/v1/clients', { body: { name: 'svc', roles: ['service'] } })
      const tok = (await a.req('POST', '/oauth/token', { raw: form({ grant_type: 'client_credentials' }), headers: { ...FORM, authorization: basic(c.body.clientId, c.body.clientSecret) } })).body.access_token
      const check = async () => (await b.req('POST', '/v1/authz/check', { token: tok, body: { userId: admin, permission: 'users:read' } })).status
      expect(await check()).toBe(200) // b now holds the client's access
      expect((await a.as(admin, 'PATCH', `/v1/clients/${c.body.clientId}`, { body: { status: 'disabled' } })).status).toBe(200)
      expect(await check()).toBe(200) // unheard of: b's copy stands
      b.clock.advance(b.deps.config.cache.ttlMs + 1)
      expect(await check()).toBe(401)

      // Enabled again elsewhere: b's copy says disabled until the relay's resync drops it.
      await a.as(admin, 'PATCH', `/v1/clients/${c.body.clientId}`, { body: { status: 'active' } })
      expect(await check()).toBe(401)
      b.deps.clients.clearCache()
      expect(await check()).toBe(200)
    } finally {
      await a.close()
      await b.close()
      await drop()
    }
  })
})
