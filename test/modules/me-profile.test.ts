/** GET /v1/me reads the user's shown columns and second-factor counts in one statement (src/modules/me/store.ts). */
import { afterEach, expect, test } from 'bun:test'
import { codeAt, mfaSetup } from '../support/mfa'
import { SoftAuthenticator } from '../support/soft-authenticator'

let s: Awaited<ReturnType<typeof mfaSetup>>
afterEach(() => s?.close())

test('GET /v1/me shows the profile, an active TOTP factor (a pending one is not) and the passkey count', async () => {
  s = await mfaSetup()
  const u = await s.addUser('profile@example.com')
  const { session } = await s.deps.sessions.create({ userId: u.id, transport: 'bearer', amr: ['pwd', 'otp'], meta: {} })
  const { token } = await s.deps.signer.sign(u.id, session.id)
  const me = async () => (await s.req('GET', '/v1/me', { token })).body
  expect(await me()).toMatchObject({ id: u.id, email: 'profile@example.com', name: 'Test User', emailVerified: false, mfa: { totp: false, passkeys: 0 } })
  const { secret } = await s.totp.enroll(u.id, u.email)
  expect((await me()).mfa).toEqual({ totp: false, passkeys: 0 })
  await s.totp.confirm(u.id, codeAt(secret, s.clock.now()))
  for (let i = 0; i < 2; i++) {
    const auth = await SoftAuthenticator.create()
    await s.passkeys.verifyRegistration(u.id, await auth.register(await s.passkeys.registrationOptions(u)))
  }
  expect((await me()).mfa).toEqual({ totp: true, passkeys: 2 })
})
