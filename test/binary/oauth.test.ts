/**
 * OAuth against the compiled binary with real client libraries: openid-client v6 (discovery,
 * client_credentials with client_secret_basic and private_key_jwt, introspection, revocation) and a
 * resource server written with jose (examples/resource-server.ts, the README's copy-paste code).
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { exportJWK, generateKeyPair } from 'jose'
import * as client from 'openid-client'
import { resourceServer } from '../../examples/resource-server'
import { serviceClient } from '../../examples/service-client'
import { ownerWithTotp, RAISED_LIMITS } from './accounts'
import { call, ROOT, signIn, startBinary } from './harness'

const bin = await startBinary({ env: RAISED_LIMITS })
afterAll(() => bin.stop())
const owner = await ownerWithTotp(bin)
const issuer = (await call(bin.base, 'GET', '/.well-known/oauth-authorization-server')).json.issuer as string
const insecure = { execute: [client.allowInsecureRequests] }

async function newClient(body: Record<string, unknown>) {
  const r = await call(bin.base, 'POST', '/v1/clients', { token: owner.accessToken, body })
  if (r.status !== 201) throw new Error(`client: ${r.status} ${r.text}`)
  return r.json as { clientId: string; clientSecret: string | null }
}

describe('discovery', () => {
  test('both documents name this issuer, and every advertised endpoint and auth method works', async () => {
    const oauthDoc = (await call(bin.base, 'GET', '/.well-known/oauth-authorization-server')).json
    const oidcDoc = (await call(bin.base, 'GET', '/.well-known/openid-configuration')).json
    for (const d of [oauthDoc, oidcDoc]) {
      expect(d.issuer).toBe(issuer)
      expect(d.grant_types_supported).toEqual(['client_credentials'])
    }
    expect(oidcDoc.response_types_supported.length).toBeGreaterThan(0)
    // The JWKS answers.
    expect((await call(bin.base, 'GET', new URL(oauthDoc.jwks_uri).pathname)).json.keys.length).toBeGreaterThan(0)
    // Every auth method on every endpoint: a client registered with it gets a token, introspects and revokes.
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const jwk = { ...(await exportJWK(publicKey)), alg: 'ES256', kid: 'disc' }
    const methods = new Set([...oauthDoc.token_endpoint_auth_methods_supported, ...oauthDoc.introspection_endpoint_auth_methods_supported, ...oauthDoc.revocation_endpoint_auth_methods_supported])
    expect([...methods].sort()).toEqual(['client_secret_basic', 'client_secret_post', 'private_key_jwt'])
    for (const method of methods) {
      const c = await newClient({ name: `disc-${method}`, authMethod: method, roles: ['service'], ...(method === 'private_key_jwt' ? { jwks: { keys: [jwk] } } : {}) })
      const auth = method === 'client_secret_basic' ? client.ClientSecretBasic(c.clientSecret!) : method === 'client_secret_post' ? client.ClientSecretPost(c.clientSecret!) : client.PrivateKeyJwt(privateKey)
      const config = await client.discovery(new URL(issuer), c.clientId, undefined, auth, insecure)
      expect(config.serverMetadata().token_endpoint).toBe(oauthDoc.token_endpoint)
      const t = await client.clientCredentialsGrant(config)
      expect(t.scope).toBe('authz:check')
      expect((await client.tokenIntrospection(config, t.access_token)).active, method).toBe(true)
      const user = await signIn(bin.base, `disc-${method}@example.com`, 'a long passphrase for discovery 7', true)
      await client.tokenRevocation(config, user.refreshToken)
      expect((await client.tokenIntrospection(config, user.accessToken)).active, method).toBe(false)
    }
  })
})

describe('openid-client', () => {
  test('the README service client: client_secret_basic token, then /v1/authz/check with it', async () => {
    const c = await newClient({ name: 'svc', roles: ['service'] })
    const { tokens, check } = await serviceClient(issuer, c.clientId, c.clientSecret!)
    expect(tokens.token_type.toLowerCase()).toBe('bearer')
    expect(tokens.scope).toBe('authz:check')
    expect(check).toEqual({ status: 200, body: { allowed: false, reason: 'unknown user' } })
  })

  test('private_key_jwt token; introspection of it and of a user token before and after logout; refresh-token revocation', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const c = await newClient({ name: 'jwt', authMethod: 'private_key_jwt', roles: ['service'], jwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', kid: 'k1' }] } })
    const config = await client.discovery(new URL(issuer), c.clientId, undefined, client.PrivateKeyJwt(privateKey), insecure)
    const t = await client.clientCredentialsGrant(config)
    const self = await client.tokenIntrospection(config, t.access_token)
    expect(self).toMatchObject({ active: true, client_id: c.clientId, sub: c.clientId, scope: 'authz:check' })
    const user = await signIn(bin.base, 'oidc-user@example.com', 'a long passphrase for oidc user 7', true)
    expect(await client.tokenIntrospection(config, user.accessToken)).toMatchObject({ active: true, sub: user.userId })
    expect((await call(bin.base, 'POST', '/v1/auth/logout', { token: user.accessToken })).status).toBe(204)
    expect((await client.tokenIntrospection(config, user.accessToken)).active).toBe(false)
    const second = await signIn(bin.base, 'oidc-user@example.com', 'a long passphrase for oidc user 7')
    await client.tokenRevocation(config, second.refreshToken)
    expect((await call(bin.base, 'POST', '/v1/auth/refresh', { body: { refreshToken: second.refreshToken } })).status).toBe(401)
    expect((await client.tokenIntrospection(config, second.accessToken)).active).toBe(false)
  })
})

describe('a resource server (jose + introspection)', () => {
  test('refuses a logged-out token on the very next request', async () => {
    const c = await newClient({ name: 'rs' })
    const rs = resourceServer({ issuer, audience: 'bulwark', clientId: c.clientId, clientSecret: c.clientSecret! })
    try {
      const user = await signIn(bin.base, 'rs-user@example.com', 'a long passphrase for rs user 7', true)
      const get = async () => fetch(`http://127.0.0.1:${rs.port}/`, { headers: { authorization: `Bearer ${user.accessToken}` } })
      const ok = await get()
      expect(ok.status).toBe(200)
      expect(await ok.json()).toEqual({ hello: user.userId })
      expect((await call(bin.base, 'POST', '/v1/auth/logout', { token: user.accessToken })).status).toBe(204)
      expect((await get()).status).toBe(401)
    } finally {
      rs.stop(true)
    }
  })

  test('the README shows the example files exactly as the tests run them', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    for (const f of ['examples/service-client.ts', 'examples/resource-server.ts']) expect(readme).toContain(readFileSync(join(ROOT, f), 'utf8').trim())
  })
})
