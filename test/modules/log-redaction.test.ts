/**
 * No credential reaches a log line. Real flows (register, email verification, login, refresh, cookie
 * session with CSRF, logout, TOTP enrolment and the MFA step, recovery codes, password change, reset,
 * lockout and unlock, and the error paths) run through the app with the logger at debug level writing to a
 * buffer, and every line is scanned for the actual secret values used or handed out.
 *
 * To stand for a careless `log.debug({ request })` anywhere, each exchange (request headers and body,
 * response headers and body) is also logged through the app's logger, nested five levels deep — deeper
 * than path-based redaction reaches — so the test fails if redaction is disabled or shallow.
 */
import { afterEach, expect, test } from 'bun:test'
import { makeApp, tokenFromMail, type ReqOpts, type TestApp } from '../helpers'
import { codeAt } from '../support/mfa'

let a: TestApp
afterEach(() => a?.close())

test('no password, token, secret, code or cookie used in real flows reaches any log line', async () => {
  a = await makeApp({ BULWARK_LOCKOUT_THRESHOLD: '3' }, { logLevel: 'debug' })
  const secrets = new Set<string>()
  const keep = (...v: unknown[]) => {
    for (const x of v) if (typeof x === 'string' && x.length >= 6) secrets.add(x)
  }
  const req = async (method: string, path: string, o: ReqOpts = {}) => {
    const r = await a.req(method, path, o)
    a.deps.logger.debug({ trace: { http: { exchange: { request: { method, path, headers: { ...o.headers, ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) }, body: o.body }, response: { status: r.status, headers: Object.fromEntries(r.headers), body: r.body } } } } }, 'exchange')
    return r
  }
  const email = 'redaction@example.com'
  const password = 'first passphrase for redaction 1'
  const password2 = 'second passphrase for redaction 2'
  const password3 = 'third passphrase for redaction 3'
  const wrong = 'wrong passphrase for redaction 9'
  keep(password, password2, password3, wrong)

  // Register, verify the email, sign in (bearer), refresh, error paths.
  expect((await req('POST', '/v1/auth/register', { body: { email, password } })).status).toBe(201)
  const verify = await tokenFromMail(a, email, /verify/i)
  keep(verify)
  expect((await req('POST', '/v1/auth/email/verify', { body: { token: verify } })).status).toBe(204)
  expect((await req('POST', '/v1/auth/login', { body: { email, password: wrong } })).status).toBe(401)
  expect((await req('POST', '/v1/auth/login', { body: { email, password, nickname: 'not a field' } })).status).toBe(422)
  expect((await req('POST', '/v1/auth/login', { raw: `{"email":"${email}","password":"${password}"`, headers: { 'content-type': 'application/json' } })).status).toBe(400)
  const login = await req('POST', '/v1/auth/login', { body: { email, password } })
  expect(login.status).toBe(200)
  keep(login.body.accessToken, login.body.refreshToken)
  const refreshed = await req('POST', '/v1/auth/refresh', { body: { refreshToken: login.body.refreshToken } })
  expect(refreshed.status).toBe(200)
  keep(refreshed.body.accessToken, refreshed.body.refreshToken)
  // A spent refresh token again, past the retry grace (reuse detection), a bad bearer token.
  a.clock.advance(10_000)
  expect((await req('POST', '/v1/auth/refresh', { body: { refreshToken: login.body.refreshToken } })).status).toBe(401)
  expect((await req('GET', '/v1/me', { token: `${refreshed.body.accessToken}x` })).status).toBe(401)

  // Cookie session: cookie, CSRF token, refused CSRF, logout.
  const cookieLogin = await req('POST', '/v1/auth/login', { body: { email, password, transport: 'cookie' } })
  expect(cookieLogin.status).toBe(200)
  const cookie = cookieLogin.headers.get('set-cookie')!.split(';')[0]!
  keep(cookie, cookie.split('=')[1], cookieLogin.body.accessToken)
  const csrf = (await req('GET', '/v1/auth/csrf', { headers: { cookie } })).body.csrfToken
  keep(csrf)
  const origin = 'http://localhost:3000'
  expect((await req('POST', '/v1/auth/logout', { headers: { cookie, origin, 'x-csrf-token': 'forged-csrf-token-value' } })).status).toBe(403)
  keep('forged-csrf-token-value')
  expect((await req('POST', '/v1/auth/logout', { headers: { cookie, origin, 'x-csrf-token': csrf } })).status).toBe(204)

  // TOTP enrolment, the MFA step, a wrong code, recovery codes.
  const token = (await req('POST', '/v1/auth/login', { body: { email, password } })).body.accessToken
  keep(token)
  const enrol = await req('POST', '/v1/me/mfa/totp', { token })
  expect(enrol.status).toBe(200)
  keep(enrol.body.secret, enrol.body.otpauthUrl)
  const code = codeAt(enrol.body.secret, a.clock.now())
  const confirm = await req('POST', '/v1/me/mfa/totp/confirm', { token, body: { code } })
  expect(confirm.status).toBe(200)
  keep(...confirm.body.recoveryCodes)
  a.clock.advance(60_000)
  const step = await req('POST', '/v1/auth/login', { body: { email, password } })
  keep(step.body.mfaToken)
  expect((await req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: step.body.mfaToken, totp: '000000' } })).status).toBe(401)
  const otp = codeAt(enrol.body.secret, a.clock.now())
  const mfa = await req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: step.body.mfaToken, totp: otp } })
  expect(mfa.status).toBe(200)
  keep(mfa.body.accessToken, mfa.body.refreshToken)
  const step2 = await req('POST', '/v1/auth/login', { body: { email, password } })
  keep(step2.body.mfaToken)
  const rec = await req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: step2.body.mfaToken, recoveryCode: confirm.body.recoveryCodes[0] } })
  expect(rec.status).toBe(200)
  keep(rec.body.accessToken, rec.body.refreshToken)

  // Password change (wrong current password, then right), reset by mail.
  expect((await req('POST', '/v1/me/password', { token: rec.body.accessToken, body: { currentPassword: wrong, password: password2 } })).status).toBe(401)
  expect((await req('POST', '/v1/me/password', { token: rec.body.accessToken, body: { currentPassword: password, password: password2 } })).status).toBe(204)
  expect((await req('POST', '/v1/auth/password/forgot', { body: { email } })).status).toBe(202)
  const reset = await tokenFromMail(a, email, /reset/i)
  keep(reset)
  expect((await req('POST', '/v1/auth/password/reset', { body: { token: reset, password: 'weak' } })).status).toBe(422)
  expect((await req('POST', '/v1/auth/password/reset', { body: { token: reset, password: password3 } })).status).toBe(204)
  expect((await req('POST', '/v1/auth/password/reset', { body: { token: reset, password: password3 } })).status).toBe(400)

  // Lockout and unlock by the mailed token.
  for (let i = 0; i < 3; i++) await req('POST', '/v1/auth/login', { body: { email, password: wrong } })
  const unlock = await tokenFromMail(a, email, /locked/i)
  keep(unlock)
  expect((await req('POST', '/v1/auth/unlock', { body: { token: unlock } })).status).toBe(204)

  await new Promise<void>((r) => a.deps.logger.flush(() => r()))
  const lines = a.logs.map((l) => JSON.stringify(l))
  expect(lines.filter((l) => l.includes('"msg":"exchange"')).length).toBeGreaterThan(30)
  expect(lines.some((l) => l.includes('"msg":"security event"'))).toBe(true)
  expect(secrets.size).toBeGreaterThan(25)
  const leaks: string[] = []
  for (const line of lines) for (const s of secrets) if (line.includes(s)) leaks.push(`${s.slice(0, 12)}… in ${line.slice(0, 160)}`)
  expect(leaks).toEqual([])
}, 30_000)
