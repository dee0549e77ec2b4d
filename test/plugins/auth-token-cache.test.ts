/**
 * The verified-token cache behind the auth plugin (src/plugins/auth.ts, src/lib/verified-token-cache.ts):
 * the signature of a token is checked once, while expiry, the signing key and the session are still
 * checked on every request.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { eq } from 'drizzle-orm'
import { signingKeys } from '../../src/db/tables'
import { CLOCK_TOLERANCE_S } from '../../src/modules/keys/service'
import { makeApp, signUp, type TestApp } from '../helpers'

let a: TestApp | undefined
afterEach(() => {
  a?.close()
  a = undefined
})

/** Counts the signer's signature verifications of user access tokens. */
function countVerifies(app: TestApp): { calls: number } {
  const counter = { calls: 0 }
  const signer = app.deps.signer
  const original = signer.verify.bind(signer)
  signer.verify = async (token: string) => {
    counter.calls++
    return await original(token)
  }
  return counter
}

describe('verified-token cache', () => {
  test('the same token is verified by the signer once, not on every request', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    const verifies = countVerifies(a)
    for (let i = 0; i < 5; i++) expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expect(verifies.calls).toBe(1)
    expect(a.deps.authn.tokens!.hits).toBeGreaterThanOrEqual(4)
  })

  test('a forged token that differs from a cached one by one character is verified, and refused', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    const sig = accessToken.slice(accessToken.lastIndexOf('.') + 1)
    const flipped = sig[5] === 'A' ? 'B' : 'A'
    const forged = `${accessToken.slice(0, accessToken.lastIndexOf('.') + 1)}${sig.slice(0, 5)}${flipped}${sig.slice(6)}`
    const verifies = countVerifies(a)
    expect((await a.req('GET', '/v1/me', { token: forged })).status).toBe(401)
    expect(verifies.calls).toBe(1)
  })

  test('expiry is still enforced on a cached token (fake clock)', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expect(a.deps.authn.tokens!.size).toBe(1)
    // Just before exp the cached entry still answers; the access-token lifetime is BULWARK_ACCESS_TOKEN_TTL.
    const ttl = a.deps.config.jwt.accessTtlMs
    a.clock.advance(ttl - 2_000)
    const verifies = countVerifies(a)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expect(verifies.calls).toBe(0)
    // Past exp plus the verifier's tolerance: refused, although the token was cached.
    a.clock.advance(2_000 + CLOCK_TOLERANCE_S * 1000 + 1_000)
    const res = await a.req('GET', '/v1/me', { token: accessToken })
    expect(res.status).toBe(401)
    expect(res.body.code).toBe('invalid_token')
    expect(verifies.calls).toBe(1)
    expect(a.deps.authn.tokens!.size).toBe(0)
  })

  test('a logged-out session is refused on the next request although its token is cached', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expect(a.deps.authn.tokens!.size).toBe(1)
    expect((await a.req('POST', '/v1/auth/logout', { token: accessToken })).status).toBe(204)
    const res = await a.req('GET', '/v1/me', { token: accessToken })
    expect(res.status).toBe(401)
    expect(res.body.code).toBe('invalid_token')
  })

  test('a session revoked elsewhere (logout-all from another session) is refused with the token cached', async () => {
    a = await makeApp()
    const first = await signUp(a)
    const second = await a.req('POST', '/v1/auth/login', { body: { email: first.email, password: first.password } })
    expect(second.status).toBe(200)
    expect((await a.req('GET', '/v1/me', { token: first.accessToken })).status).toBe(200)
    expect((await a.req('POST', '/v1/auth/logout-all', { token: second.body.accessToken })).status).toBe(204)
    expect((await a.req('GET', '/v1/me', { token: first.accessToken })).status).toBe(401)
  })

  test('after a rotation the old key keeps verifying; once its key is gone, entries it signed are dropped and refused', async () => {
    a = await makeApp()
    const { accessToken } = await signUp(a)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    const oldKid = JSON.parse(Buffer.from(accessToken.split('.')[0]!, 'base64url').toString()).kid as string
    await a.deps.signer.rotate()
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expect(a.deps.authn.tokens!.size).toBe(1)
    // The old key removed from the table (as a revocation would) and the signer reloaded.
    await a.deps.db.delete(signingKeys).where(eq(signingKeys.kid, oldKid))
    await a.deps.signer.load()
    const verifies = countVerifies(a)
    expect((await a.req('GET', '/v1/me', { token: accessToken })).status).toBe(401)
    expect(verifies.calls).toBe(1)
    expect(a.deps.authn.tokens!.size).toBe(0)
  })
})
