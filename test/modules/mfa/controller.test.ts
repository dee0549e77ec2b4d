import { afterEach, describe, expect, test } from 'bun:test'
import { Elysia } from 'elysia'
import { createHandler } from '../../../src/app'
import { mfaController } from '../../../src/modules/mfa'
import { bodyParser } from '../../../src/plugins/body-parser'
import { errorHandler } from '../../../src/plugins/error-handler'
import { requestContext } from '../../../src/plugins/request-context'
import { expectProblem, type TestResponse } from '../../helpers'
import { codeAt, mfaSetup } from '../../support/mfa'
import { SoftAuthenticator } from '../../support/soft-authenticator'
import { testAuth } from '../../support/test-auth'

let s: Awaited<ReturnType<typeof mfaSetup>>
afterEach(() => s?.close())

/** The MFA controller behind the real global plugins, with the x-test-user stand-in for auth. */
async function setup() {
  s = await mfaSetup()
  const app = new Elysia({ normalize: false })
    .use(requestContext([]))
    .use(errorHandler(s.deps.logger))
    .use(bodyParser({ json: s.deps.config.bodyLimit, upload: 4096, uploadPaths: () => false }))
    .use(mfaController(testAuth(s.clock), s.services, s.deps))
  const handler = createHandler(app, s.deps)
  const req = async (method: string, path: string, o: { user?: string; body?: unknown; age?: number; raw?: string } = {}): Promise<TestResponse> => {
    const headers: Record<string, string> = {}
    if (o.user) headers['x-test-user'] = o.user
    if (o.age !== undefined) headers['x-test-auth-age'] = String(o.age)
    let body: string | undefined = o.raw
    if (o.body !== undefined) body = JSON.stringify(o.body)
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await handler(new Request(`http://localhost${path}`, { method, headers, body }), '203.0.113.9')
    const text = await res.text()
    let parsed: any
    try {
      parsed = text ? JSON.parse(text) : undefined
    } catch {}
    return { status: res.status, headers: res.headers, body: parsed, text }
  }
  return { req }
}

describe('MFA controller', () => {
  test('every route needs a signed-in user (except passkey sign-in options)', async () => {
    const { req } = await setup()
    // validation runs before the auth macro (ARCHITECTURE.md), so bodies are well-formed here
    const registration = await (await SoftAuthenticator.create()).register({ challenge: 'AAAA', rp: { id: 'localhost', name: 'x' }, user: { id: 'AAAA', name: 'x' } })
    for (const [m, p, body] of [
      ['POST', '/v1/me/mfa/totp'],
      ['POST', '/v1/me/mfa/totp/confirm', { code: '123456' }],
      ['DELETE', '/v1/me/mfa/totp'],
      ['POST', '/v1/me/mfa/recovery-codes'],
      ['POST', '/v1/me/passkeys/options'],
      ['POST', '/v1/me/passkeys', { response: registration }],
      ['GET', '/v1/me/passkeys'],
      ['PATCH', '/v1/me/passkeys/0190a0b0-0000-7000-8000-000000000000', { name: 'x' }],
      ['DELETE', '/v1/me/passkeys/0190a0b0-0000-7000-8000-000000000000'],
    ] as const) {
      expectProblem(await req(m, p, { body }), 401)
    }
    expect((await req('POST', '/v1/auth/passkey/options')).status).toBe(200)
  })

  test('TOTP: enrol, confirm, recovery codes, delete with step-up', async () => {
    const { req } = await setup()
    const u = await s.addUser('bob@example.com')
    const e = await req('POST', '/v1/me/mfa/totp', { user: u.id })
    expect(e.status).toBe(200)
    expect(Object.keys(e.body).sort()).toEqual(['otpauthUrl', 'secret'])
    expect(e.body.otpauthUrl).toContain('bob%40example.com')
    expectProblem(await req('POST', '/v1/me/mfa/totp/confirm', { user: u.id, body: { code: 'abcdef' } }), 422, 'invalid_code')
    expectProblem(await req('POST', '/v1/me/mfa/totp/confirm', { user: u.id, body: { code: '123456', extra: 1 } }), 422, 'validation_failed')
    const c = await req('POST', '/v1/me/mfa/totp/confirm', { user: u.id, body: { code: codeAt(e.body.secret, s.clock.now()) } })
    expect(c.status).toBe(200)
    expect(c.body.recoveryCodes).toHaveLength(10)
    expectProblem(await req('POST', '/v1/me/mfa/totp', { user: u.id }), 409, 'totp_already_active')

    // step-up: a sign-in older than BULWARK_STEP_UP_TTL is not enough
    const stale = s.deps.config.tokens.stepUpTtlMs + 1
    expectProblem(await req('POST', '/v1/me/mfa/recovery-codes', { user: u.id, age: stale }), 401, 'reauthentication_required')
    const r = await req('POST', '/v1/me/mfa/recovery-codes', { user: u.id, age: 1000 })
    expect(r.status).toBe(200)
    expect(r.body.recoveryCodes).toHaveLength(10)
    expect(r.body.recoveryCodes).not.toEqual(c.body.recoveryCodes)

    expectProblem(await req('DELETE', '/v1/me/mfa/totp', { user: u.id, age: stale }), 401, 'reauthentication_required')
    expect(await s.totp.status(u.id)).toBe('active')
    expect((await req('DELETE', '/v1/me/mfa/totp', { user: u.id })).status).toBe(204)
    expect(await s.totp.status(u.id)).toBe('none')
    expectProblem(await req('DELETE', '/v1/me/mfa/totp', { user: u.id }), 404)
    // without a factor, recovery codes cannot be regenerated
    expectProblem(await req('POST', '/v1/me/mfa/recovery-codes', { user: u.id }), 409, 'no_second_factor')
  })

  test('passkeys: options, register (201), list, rename, delete with step-up; others get 404', async () => {
    const { req } = await setup()
    const u = await s.addUser()
    const other = await s.addUser()
    const auth = await SoftAuthenticator.create()
    const o = await req('POST', '/v1/me/passkeys/options', { user: u.id })
    expect(o.status).toBe(200)
    expect(o.body.rp.id).toBe('localhost')
    const reg = await req('POST', '/v1/me/passkeys', { user: u.id, body: { response: await auth.register(o.body), name: 'YubiKey' } })
    expect(reg.status).toBe(201)
    expect(reg.body).toMatchObject({ name: 'YubiKey', backedUp: false })
    const list = await req('GET', '/v1/me/passkeys', { user: u.id })
    expect(list.body).toEqual({ items: [reg.body], nextCursor: null })
    expect((await req('GET', '/v1/me/passkeys', { user: other.id })).body.items).toEqual([])
    const renamed = await req('PATCH', `/v1/me/passkeys/${reg.body.id}`, { user: u.id, body: { name: 'Key' } })
    expect(renamed.body.name).toBe('Key')
    expectProblem(await req('DELETE', `/v1/me/passkeys/${reg.body.id}`, { user: other.id }), 404)
    expectProblem(await req('DELETE', '/v1/me/passkeys/not-an-id', { user: u.id }), 404)
    expectProblem(await req('DELETE', `/v1/me/passkeys/${reg.body.id}`, { user: u.id, age: 10 * 60_000 }), 401, 'reauthentication_required')
    expect((await req('DELETE', `/v1/me/passkeys/${reg.body.id}`, { user: u.id })).status).toBe(204)
    expect(await s.passkeys.count(u.id)).toBe(0)
  })

  test('oversized or malformed WebAuthn payloads are refused by the schema (422), garbage the library rejects is 400', async () => {
    const { req } = await setup()
    const u = await s.addUser()
    const auth = await SoftAuthenticator.create()
    const o = await req('POST', '/v1/me/passkeys/options', { user: u.id })
    const resp = await auth.register(o.body)
    expectProblem(await req('POST', '/v1/me/passkeys', { user: u.id, body: { response: { ...resp, id: 'A'.repeat(5000) } } }), 422, 'validation_failed')
    expectProblem(await req('POST', '/v1/me/passkeys', { user: u.id, body: { response: { ...resp, response: { ...resp.response, attestationObject: 'A'.repeat(20_000) } } } }), 422)
    expectProblem(await req('POST', '/v1/me/passkeys', { user: u.id, body: { response: resp, name: 'x'.repeat(65) } }), 422)
    expectProblem(await req('POST', '/v1/me/passkeys', { user: u.id, body: { response: 'nope' } }), 422)
    const garbage = { ...resp, response: { ...resp.response, attestationObject: Buffer.from([0xde, 0xad, 0xbe, 0xef]).toString('base64url') } }
    expectProblem(await req('POST', '/v1/me/passkeys', { user: u.id, body: { response: garbage } }), 400, 'webauthn_failed')
    expectProblem(await req('POST', '/v1/me/passkeys', { user: u.id, raw: '{"response": {' }), 400)
  })

  test('passkey sign-in options: passwordless without a body, second-factor with an mfaToken', async () => {
    const { req } = await setup()
    const u = await s.addUser()
    const auth = await SoftAuthenticator.create()
    await s.passkeys.verifyRegistration(u.id, await auth.register(await s.passkeys.registrationOptions(u)))
    const open = await req('POST', '/v1/auth/passkey/options')
    expect(open.status).toBe(200)
    expect(open.body.allowCredentials ?? []).toEqual([])
    expect((await req('POST', '/v1/auth/passkey/options', { body: {} })).status).toBe(200)
    const { mfaToken } = await s.login.startMfa(u.id)
    const second = await req('POST', '/v1/auth/passkey/options', { body: { mfaToken } })
    expect(second.body.allowCredentials.map((c: { id: string }) => c.id)).toEqual([auth.id])
    expectProblem(await req('POST', '/v1/auth/passkey/options', { body: { mfaToken: 'x'.repeat(40) } }), 401, 'invalid_mfa_token')
    expectProblem(await req('POST', '/v1/auth/passkey/options', { body: { mfaToken: 'x'.repeat(200) } }), 422)
  })
})
