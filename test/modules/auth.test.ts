import { afterEach, describe, expect, test } from 'bun:test'
import { createLocalJWKSet, jwtVerify, SignJWT, base64url } from 'jose'
import { expectProblem, makeApp, mailsTo, signUp, STRONG_PASSWORD, tokenFromMail, uniqueEmail, type TestApp } from '../helpers'
import { sqlExec, sqlRows } from '../support/sql'

let a: TestApp
afterEach(() => a?.close())

const MIN = 60_000
const DAY = 86_400_000

describe('register', () => {
  test('creates an account with the user role and mails a verification link', async () => {
    a = await makeApp()
    const email = uniqueEmail()
    const r = await a.req('POST', '/v1/auth/register', { body: { email: `  ${email.toUpperCase()} `, password: STRONG_PASSWORD, name: 'Ada\u202e Lovelace' } })
    expect(r.status).toBe(201)
    expect(r.body.user).toMatchObject({ email, name: 'Ada Lovelace', emailVerified: false })
    expect(r.body.user.passwordHash).toBeUndefined()
    expect((await mailsTo(a, email))[0]!.subject).toMatch(/verify/i)
    const roles = (await a.deps.rbac.effective(r.body.user.id))!.roles
    expect(roles).toEqual(['user'])
  })

  test('the same address in another case or form is a conflict', async () => {
    a = await makeApp()
    const email = uniqueEmail()
    await a.req('POST', '/v1/auth/register', { body: { email, password: STRONG_PASSWORD } })
    const again = await a.req('POST', '/v1/auth/register', { body: { email: email.toUpperCase(), password: STRONG_PASSWORD } })
    expectProblem(again, 409, 'conflict')
  })

  test('a weak password is 422 weak_password with reasons, and nothing is written', async () => {
    a = await makeApp()
    const r = await a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: 'short' } })
    const p = expectProblem(r, 422, 'weak_password')
    expect(p.reasons.map((x: { code: string }) => x.code)).toContain('too_short')
    expect(await a.deps.auth.userCount()).toBe(0)
  })

  test.each([['roles', ['owner']], ['emailVerified', true], ['id', '00000000-0000-7000-8000-000000000001']])('mass assignment of %s is refused with 422', async (field, value) => {
    a = await makeApp()
    const r = await a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD, [field as string]: value } })
    const p = expectProblem(r, 422, 'validation_failed')
    expect(p.errors[0].path).toBe(`/${field}`)
    expect(await a.deps.auth.userCount()).toBe(0)
  })

  test.each([
    ['missing email', { password: STRONG_PASSWORD }, 422],
    ['bad email', { email: 'nope', password: STRONG_PASSWORD }, 422],
    ['number password', { email: 'a@example.com', password: 12 }, 422],
    ['huge name', { email: 'a@example.com', password: STRONG_PASSWORD, name: 'x'.repeat(500) }, 422],
  ])('%s → %i', async (_n, body, status) => {
    a = await makeApp()
    expectProblem(await a.req('POST', '/v1/auth/register', { body }), status as number)
    expect(await a.deps.auth.userCount()).toBe(0)
  })

  test('malformed JSON, wrong content type and oversized bodies are refused', async () => {
    a = await makeApp()
    expectProblem(await a.req('POST', '/v1/auth/register', { raw: '{"email":', headers: { 'content-type': 'application/json' } }), 400)
    expectProblem(await a.req('POST', '/v1/auth/register', { raw: 'email=a', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415)
    expectProblem(await a.req('POST', '/v1/auth/register', { raw: JSON.stringify({ email: 'a@example.com', password: 'x'.repeat(2_000_000) }), headers: { 'content-type': 'application/json' } }), 413)
    expect(await a.deps.auth.userCount()).toBe(0)
  })
})

describe('login', () => {
  test('returns a token pair and the user', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    const r = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ tokenType: 'Bearer', expiresIn: 600, user: { email } })
    expect(r.body.accessToken.split('.').length).toBe(3)
    expect(r.body.refreshToken.length).toBeGreaterThanOrEqual(43)
  })

  test('wrong password and unknown email get the same answer', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    const wrong = await a.req('POST', '/v1/auth/login', { body: { email, password: 'not the password at all' } })
    const unknown = await a.req('POST', '/v1/auth/login', { body: { email: uniqueEmail(), password: 'not the password at all' } })
    const p1 = expectProblem(wrong, 401, 'invalid_credentials')
    const p2 = expectProblem(unknown, 401, 'invalid_credentials')
    expect({ ...p1, requestId: '' }).toEqual({ ...p2, requestId: '' })
    expect([...wrong.headers.keys()].sort()).toEqual([...unknown.headers.keys()].sort())
  })

  test('an unknown email costs the same hashing work as a wrong password', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    const h = a.deps.hasher
    let verifies = 0
    const orig = h.verify.bind(h)
    // dummyVerify runs a real verify (against the hasher's dummy PHC string), so counting verify counts both paths.
    h.verify = async (p, x) => (verifies++, orig(p, x))
    await a.req('POST', '/v1/auth/login', { body: { email, password: 'wrong password here' } })
    const known = verifies
    verifies = 0
    await a.req('POST', '/v1/auth/login', { body: { email: uniqueEmail(), password: 'wrong password here' } })
    expect(known).toBe(1)
    expect(verifies).toBe(known)
  })

  test('a disabled account gets invalid_credentials too', async () => {
    a = await makeApp()
    const { email, user } = await signUp(a)
    await sqlExec(a.deps, "UPDATE users SET status = 'disabled' WHERE id = ?", [user.id])
    expectProblem(await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } }), 401, 'invalid_credentials')
  })

  test('a hash with older parameters is re-hashed on the next successful login', async () => {
    a = await makeApp()
    const { email, user } = await signUp(a)
    const old = await Bun.password.hash(STRONG_PASSWORD, { algorithm: 'argon2id', memoryCost: 2048, timeCost: 2 })
    await sqlExec(a.deps, 'UPDATE users SET password_hash = ? WHERE id = ?', [old, user.id])
    expect((await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })).status).toBe(200)
    const now = (await sqlRows<{ h: string }>(a.deps, 'SELECT password_hash AS h FROM users WHERE id = ?', [user.id]))[0]!.h
    expect(now).not.toBe(old)
    expect(a.deps.hasher.needsRehash(now)).toBe(false)
  })

  test('records login and login_failed events without secrets', async () => {
    a = await makeApp()
    const { email, user } = await signUp(a)
    await a.req('POST', '/v1/auth/login', { body: { email, password: 'wrong password here' } })
    const types = (await a.deps.audit.list({ userId: user.id, limit: 50 })).map((e) => e.type)
    expect(types).toContain('login')
    expect(types).toContain('login_failed')
    expect(JSON.stringify(a.logs)).not.toContain(STRONG_PASSWORD)
    expect(JSON.stringify(a.logs)).not.toContain('wrong password here')
  })
})

describe('access tokens', () => {
  test('verify with an independent library from the JWKS alone', async () => {
    a = await makeApp()
    const { accessToken, user } = await signUp(a)
    const jwks = (await a.req('GET', '/.well-known/jwks.json')).body
    expect(jwks.keys.length).toBe(1)
    expect(jwks.keys[0].d).toBeUndefined()
    const { payload, protectedHeader } = await jwtVerify(accessToken, createLocalJWKSet(jwks), {
      issuer: 'http://localhost:3000',
      audience: 'bulwark',
      currentDate: new Date(a.clock.now()),
    })
    expect(protectedHeader.alg).toBe('EdDSA')
    expect(protectedHeader.kid).toBe(jwks.keys[0].kid)
    expect(payload.sub).toBe(user.id)
    for (const c of ['sid', 'iat', 'exp', 'jti']) expect(payload[c]).toBeDefined()
    expect(payload.exp! - payload.iat!).toBe(600)
  })

  test('ES256 works too', async () => {
    a = await makeApp({ BULWARK_JWT_ALG: 'ES256' })
    const { accessToken } = await signUp(a)
    const jwks = (await a.req('GET', '/.well-known/jwks.json')).body
    const { protectedHeader } = await jwtVerify(accessToken, createLocalJWKSet(jwks), { currentDate: new Date(a.clock.now()) })
    expect(protectedHeader.alg).toBe('ES256')
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
  })

  test('GET /v1/me works with the token and not without', async () => {
    a = await makeApp()
    const { accessToken, email } = await signUp(a)
    const me = await a.req('GET', '/v1/me', { token: accessToken })
    expect(me.status).toBe(200)
    expect(me.body).toMatchObject({ email, emailVerified: false, roles: ['user'], mfa: { totp: false, passkeys: 0 } })
    expect(me.body.permissions).toContain('files:read:own')
    expectProblem(await a.req('GET', '/v1/me'), 401, 'unauthorized')
    expectProblem(await a.req('GET', '/v1/me', { headers: { authorization: 'Basic abc' } }), 401)
  })

  const forge = (token: string, mutate: (h: any, p: any) => void, sig?: string) => {
    const [h, p, s] = token.split('.')
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString())
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString())
    mutate(header, payload)
    return `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}.${sig ?? s}`
  }

  test('tampered, alg:none and HS256-with-public-key tokens are refused', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    const tampered = forge(accessToken, (_h, p) => (p.sub = '00000000-0000-7000-8000-000000000999'))
    expectProblem(await a.req('GET', '/v1/me', { token: tampered }), 401, 'invalid_token')
    const none = forge(accessToken, (h) => (h.alg = 'none'), '')
    expectProblem(await a.req('GET', '/v1/me', { token: none }), 401)
    const jwk = (await a.req('GET', '/.well-known/jwks.json')).body.keys[0]
    const [h, p] = accessToken.split('.')
    const header = base64url.encode(JSON.stringify({ alg: 'HS256', kid: jwk.kid, typ: 'JWT' }))
    const hmac = new Bun.CryptoHasher('sha256', JSON.stringify(jwk)).update(`${header}.${p}`).digest('base64url')
    expectProblem(await a.req('GET', '/v1/me', { token: `${header}.${p}.${hmac}` }), 401, 'invalid_token')
    void h
  })

  test('expired tokens, wrong audience and wrong issuer are refused', async () => {
    a = await makeApp()
    const { accessToken, user } = await signUp(a)
    // The signer's private key, to forge tokens that differ from real ones in exactly one claim.
    const key = (a.deps.signer as unknown as { current: { kid: string; privateKey: import('node:crypto').KeyObject } }).current
    const sign = (iss: string, aud: string) =>
      new SignJWT({ sid: JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()).sid })
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
        .setIssuer(iss)
        .setAudience(aud)
        .setSubject(user.id)
        .setIssuedAt(Math.floor(a.clock.now() / 1000))
        .setExpirationTime(Math.floor(a.clock.now() / 1000) + 600)
        .setJti('x1234567890')
        .sign(key.privateKey)
    expect((await a.req('GET', '/v1/me', { token: await sign('http://localhost:3000', 'bulwark') })).status).toBe(200)
    expectProblem(await a.req('GET', '/v1/me', { token: await sign('http://localhost:3000', 'another-api') }), 401, 'invalid_token')
    expectProblem(await a.req('GET', '/v1/me', { token: await sign('https://evil.example.com', 'bulwark') }), 401, 'invalid_token')
    a.clock.advance(11 * MIN)
    expectProblem(await a.req('GET', '/v1/me', { token: accessToken }), 401, 'invalid_token')
  })

  test('a token of an ended session or a disabled user is refused on the next request', async () => {
    a = await makeApp()
    const { accessToken, user } = await signUp(a)
    expect((await a.req('POST', '/v1/auth/logout', { token: accessToken })).status).toBe(204)
    expectProblem(await a.req('GET', '/v1/me', { token: accessToken }), 401, 'invalid_token')
    const second = await a.req('POST', '/v1/auth/login', { body: { email: user.email, password: STRONG_PASSWORD } })
    expect((await a.req('GET', '/v1/me', { token: second.body.accessToken })).status).toBe(200)
    await sqlExec(a.deps, "UPDATE users SET status = 'disabled' WHERE id = ?", [user.id])
    a.deps.invalidation.emit({ kind: 'user', id: user.id })
    expectProblem(await a.req('GET', '/v1/me', { token: second.body.accessToken }), 401, 'invalid_token')
  })

  test('key rotation: JWKS publishes both keys, old tokens work until they expire, then the old key is retired', async () => {
    a = await makeApp()
    const { accessToken, email } = await signUp(a)
    const before = (await a.req('GET', '/.well-known/jwks.json')).body.keys
    await a.deps.signer.rotate()
    const after = (await a.req('GET', '/.well-known/jwks.json')).body.keys
    expect(after.length).toBe(2)
    expect(after.map((k: { kid: string }) => k.kid)).toContain(before[0].kid)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    const fresh = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    const kid = JSON.parse(Buffer.from(fresh.body.accessToken.split('.')[0], 'base64url').toString()).kid
    expect(kid).not.toBe(before[0].kid)
    a.clock.advance(12 * MIN)
    await a.deps.signer.load()
    const retired = (await a.req('GET', '/.well-known/jwks.json')).body.keys
    expect(retired.map((k: { kid: string }) => k.kid)).not.toContain(before[0].kid)
    const refreshed = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: fresh.body.refreshToken } })
    expect(refreshed.status).toBe(200)
    expect((await a.req('GET', '/v1/me', { token: refreshed.body.accessToken })).status).toBe(200)
  })
})

describe('refresh tokens and sessions', () => {
  test('rotation: each refresh returns a new pair and spends the old token', async () => {
    a = await makeApp()
    const { refreshToken } = await signUp(a)
    const r1 = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
    expect(r1.status).toBe(200)
    expect(r1.body.refreshToken).not.toBe(refreshToken)
    a.clock.advance(10_000)
    const r2 = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: r1.body.refreshToken } })
    expect(r2.status).toBe(200)
  })

  test('reuse of a spent token revokes the whole family and records refresh_token_reuse', async () => {
    a = await makeApp()
    const { refreshToken, user } = await signUp(a)
    const r1 = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
    a.clock.advance(30_000)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } }), 401, 'invalid_refresh_token')
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: r1.body.refreshToken } }), 401)
    expectProblem(await a.req('GET', '/v1/me', { token: r1.body.accessToken }), 401)
    expect((await a.deps.audit.list({ type: 'refresh_token_reuse', limit: 5 }))[0]!.targetId).toBe(user.id)
  })

  test('a concurrent retry within the grace is not treated as theft', async () => {
    a = await makeApp()
    const { refreshToken } = await signUp(a)
    const r1 = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
    a.clock.advance(1_000)
    const retry = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
    expect(retry.status).toBe(200)
    // The retry gets the same successor: the session never forks into two refresh chains.
    expect(retry.body.refreshToken).toBe(r1.body.refreshToken)
    a.clock.advance(10_000)
    expect((await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: r1.body.refreshToken } })).status).toBe(200)
  })

  test('a retry within the grace after the successor was already spent is reuse', async () => {
    a = await makeApp()
    const { refreshToken } = await signUp(a)
    const r1 = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
    const r2 = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: r1.body.refreshToken } })
    expect(r2.status).toBe(200)
    a.clock.advance(1_000)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } }), 401)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: r2.body.refreshToken } }), 401)
    expect((await a.deps.audit.list({ type: 'refresh_token_reuse', limit: 5 })).length).toBe(1)
  })

  test('the successor is stored only encrypted, and dropped by the pruner once the reuse grace is over', async () => {
    a = await makeApp()
    const { refreshToken } = await signUp(a)
    const r1 = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
    const dump = JSON.stringify(await sqlRows(a.deps, 'SELECT * FROM refresh_tokens'))
    expect(dump).not.toContain(r1.body.refreshToken)
    expect(dump).toContain('v1.')
    const kept = async () => (await sqlRows<{ s: string | null }>(a.deps, 'SELECT successor_enc AS s FROM refresh_tokens WHERE successor_enc IS NOT NULL')).length
    expect(await kept()).toBe(1)
    a.clock.advance(a.deps.config.session.refreshReuseGraceMs + 1)
    await a.deps.pruner.runOnce()
    expect(await kept()).toBe(0)
  })

  test('idle timeout ends an unused session', async () => {
    a = await makeApp({ BULWARK_SESSION_IDLE_TTL: '1h' })
    const { refreshToken } = await signUp(a)
    a.clock.advance(61 * MIN)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } }), 401)
  })

  test('absolute lifetime ends a session however active', async () => {
    a = await makeApp({ BULWARK_SESSION_ABSOLUTE_TTL: '2d', BULWARK_SESSION_IDLE_TTL: '1d' })
    let { refreshToken } = await signUp(a)
    for (let i = 0; i < 3; i++) {
      a.clock.advance(DAY / 2)
      const r = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
      expect(r.status).toBe(200)
      refreshToken = r.body.refreshToken
    }
    a.clock.advance(DAY / 2 + 1)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } }), 401)
  })

  test('garbage refresh tokens are 401 or 422, never 500', async () => {
    a = await makeApp()
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: 'A'.repeat(43) } }), 401)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: 'not a token!' } }), 422)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: {} }), 401)
    expectProblem(await a.req('POST', '/v1/auth/refresh'), 401)
  })

  test('session list shows device, ip, times and the current one; one can be ended', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    const other = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD }, headers: { 'user-agent': 'OtherDevice/1.0' }, ip: '198.51.100.20' })
    const list = await a.req('GET', '/v1/me/sessions', { token: accessToken })
    expect(list.body.items.length).toBe(2)
    const o = list.body.items.find((s: { userAgent: string }) => s.userAgent === 'OtherDevice/1.0')
    expect(o).toMatchObject({ ip: '198.51.100.20', current: false })
    expect(list.body.items.filter((s: { current: boolean }) => s.current).length).toBe(1)
    expect((await a.req('DELETE', `/v1/me/sessions/${o.id}`, { token: accessToken })).status).toBe(204)
    expectProblem(await a.req('GET', '/v1/me', { token: other.body.accessToken }), 401)
    expectProblem(await a.req('DELETE', `/v1/me/sessions/${o.id}`, { token: accessToken }), 404)
    expectProblem(await a.req('DELETE', '/v1/me/sessions/not-an-id', { token: accessToken }), 422)
  })

  test("another user's session id is 404", async () => {
    a = await makeApp()
    const one = await signUp(a)
    const two = await signUp(a)
    const sid = (await a.req('GET', '/v1/me/sessions', { token: two.accessToken })).body.items[0].id
    expectProblem(await a.req('DELETE', `/v1/me/sessions/${sid}`, { token: one.accessToken }), 404)
  })

  test('logout-all ends every session', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    const other = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expect((await a.req('POST', '/v1/auth/logout-all', { token: accessToken })).status).toBe(204)
    expectProblem(await a.req('GET', '/v1/me', { token: accessToken }), 401)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken: other.body.refreshToken } }), 401)
  })
})

describe('cookie transport', () => {
  test('login sets a __Host- HttpOnly Secure SameSite=Strict cookie and refresh/logout accept it', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    const r = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD, transport: 'cookie' } })
    expect(r.status).toBe(200)
    expect(r.body.refreshToken).toBeUndefined()
    const cookie = r.headers.get('set-cookie')!
    expect(cookie).toMatch(/^__Host-bulwark_session=[A-Za-z0-9_-]+; /)
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) expect(cookie).toContain(attr)
    const value = cookie.split(';')[0]!
    const origin = 'http://localhost:3000'
    expectProblem(await a.req('POST', '/v1/auth/refresh', { headers: { cookie: value, origin } }), 403, 'csrf_failed')
    const csrf = (await a.req('GET', '/v1/auth/csrf', { headers: { cookie: value } })).body.csrfToken
    const ref = await a.req('POST', '/v1/auth/refresh', { headers: { cookie: value, origin, 'x-csrf-token': csrf } })
    expect(ref.status).toBe(200)
    expect(ref.body.refreshToken).toBeUndefined()
    const next = ref.headers.get('set-cookie')!.split(';')[0]!
    expect(next).not.toBe(value)
    const csrf2 = (await a.req('GET', '/v1/auth/csrf', { headers: { cookie: next } })).body.csrfToken
    expect(csrf2).not.toBe(csrf)
    const out = await a.req('POST', '/v1/auth/logout', { headers: { cookie: next, origin, 'x-csrf-token': csrf2 } })
    expect(out.status).toBe(204)
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0')
    expect(out.headers.get('clear-site-data')).toBe('"cookies"')
    const csrf3 = (await a.req('GET', '/v1/auth/csrf', { headers: { cookie: next } })).body.csrfToken
    expectProblem(await a.req('POST', '/v1/auth/refresh', { headers: { cookie: next, origin, 'x-csrf-token': csrf3 } }), 401)
  })

  test('with BULWARK_ALLOW_HTTP=1 and a plain-http public URL the cookie is not Secure and has no __Host- prefix', async () => {
    a = await makeApp({ BULWARK_ALLOW_HTTP: '1', BULWARK_PUBLIC_URL: 'http://auth.internal:3000' })
    const { email } = await signUp(a)
    const r = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD, transport: 'cookie' } })
    const cookie = r.headers.get('set-cookie')!
    expect(cookie).toMatch(/^bulwark_session=/)
    expect(cookie).not.toContain('Secure')
  })
})

describe('passwords and email', () => {
  test('email verification with the mailed token, single use', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    const token = await tokenFromMail(a, email, /verify/i)
    expect((await a.req('POST', '/v1/auth/email/verify', { body: { token } })).status).toBe(204)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).body.emailVerified).toBe(true)
    expectProblem(await a.req('POST', '/v1/auth/email/verify', { body: { token } }), 400, 'invalid_token')
  })

  test('verification tokens expire', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    const token = await tokenFromMail(a, email, /verify/i)
    a.clock.advance(25 * 3_600_000)
    expectProblem(await a.req('POST', '/v1/auth/email/verify', { body: { token } }), 400, 'invalid_token')
  })

  test('forgot is 202 for known and unknown addresses alike; reset works once and ends every session', async () => {
    a = await makeApp()
    const { email, accessToken, refreshToken } = await signUp(a)
    const unknown = await a.req('POST', '/v1/auth/password/forgot', { body: { email: uniqueEmail() } })
    const known = await a.req('POST', '/v1/auth/password/forgot', { body: { email } })
    expect(unknown.status).toBe(202)
    expect(known.status).toBe(202)
    expect(unknown.body).toEqual(known.body)
    const token = await tokenFromMail(a, email, /reset/i)
    const newPassword = 'an entirely different passphrase 7'
    expect((await a.req('POST', '/v1/auth/password/reset', { body: { token, password: newPassword } })).status).toBe(204)
    expectProblem(await a.req('GET', '/v1/me', { token: accessToken }), 401)
    expectProblem(await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } }), 401)
    expectProblem(await a.req('POST', '/v1/auth/password/reset', { body: { token, password: 'yet another passphrase 99' } }), 400, 'invalid_token')
    expectProblem(await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } }), 401)
    expect((await a.req('POST', '/v1/auth/login', { body: { email, password: newPassword } })).status).toBe(200)
  })

  test('reset tokens expire after 30 minutes and a weak new password keeps the token usable', async () => {
    a = await makeApp()
    const { email } = await signUp(a)
    await a.req('POST', '/v1/auth/password/forgot', { body: { email } })
    const token = await tokenFromMail(a, email, /reset/i)
    expectProblem(await a.req('POST', '/v1/auth/password/reset', { body: { token, password: 'weak' } }), 422, 'weak_password')
    a.clock.advance(31 * MIN)
    expectProblem(await a.req('POST', '/v1/auth/password/reset', { body: { token, password: 'an entirely different passphrase 7' } }), 400, 'invalid_token')
  })

  test('change password: needs the current one, refuses reuse, keeps this session and ends the others', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    const other = await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })
    expectProblem(await a.req('POST', '/v1/me/password', { token: accessToken, body: { currentPassword: 'wrong one entirely', password: 'brand new passphrase 123' } }), 401)
    expectProblem(await a.req('POST', '/v1/me/password', { token: accessToken, body: { currentPassword: STRONG_PASSWORD, password: STRONG_PASSWORD } }), 422, 'weak_password')
    expect((await a.req('POST', '/v1/me/password', { token: accessToken, body: { currentPassword: STRONG_PASSWORD, password: 'brand new passphrase 123' } })).status).toBe(204)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expectProblem(await a.req('GET', '/v1/me', { token: other.body.accessToken }), 401)
  })

  test('PATCH /v1/me changes the name, stripped of control characters', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    const r = await a.req('PATCH', '/v1/me', { token: accessToken, body: { name: 'New\u0007 Name' } })
    expect(r.status).toBe(200)
    expect(r.body.name).toBe('New Name')
    expectProblem(await a.req('PATCH', '/v1/me', { token: accessToken, body: { name: 'x', email: 'evil@example.com' } }), 422)
  })

  test('own security events are listed newest first with keyset pagination', async () => {
    a = await makeApp()
    const { email, accessToken } = await signUp(a)
    for (let i = 0; i < 3; i++) await a.req('POST', '/v1/auth/login', { body: { email, password: 'wrong password here' } })
    const p1 = await a.req('GET', '/v1/me/events?limit=2', { token: accessToken })
    expect(p1.body.items.length).toBe(2)
    expect(p1.body.nextCursor).toBeTruthy()
    const p2 = await a.req('GET', `/v1/me/events?limit=2&cursor=${encodeURIComponent(p1.body.nextCursor)}`, { token: accessToken })
    expect(p2.body.items[0].id).toBeLessThan(p1.body.items[1].id)
    expectProblem(await a.req('GET', `/v1/me/events?cursor=${encodeURIComponent(p1.body.nextCursor + 'x')}`, { token: accessToken }), 400, 'invalid_cursor')
    expectProblem(await a.req('GET', '/v1/me/events?limit=1000', { token: accessToken }), 422)
  })
})
