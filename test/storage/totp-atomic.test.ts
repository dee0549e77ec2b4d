/**
 * Regression: TOTP confirmation activated the factor, then stored its recovery codes in a second write;
 * a failure (or crash) between the two left an active factor with no recovery codes. Now one transaction.
 */
import { afterEach, expect, test } from 'bun:test'
import { codeAt, mfaSetup } from '../support/mfa'

let s: Awaited<ReturnType<typeof mfaSetup>>
afterEach(() => s?.close())

const codesOf = (userId: string) => s.deps.storage.sqlite!.query<{ n: number }, [string]>('SELECT count(*) AS n FROM recovery_codes WHERE user_id = ?').get(userId)!.n

test('a failing recovery-code insert leaves the factor pending, with no codes, and the same code confirms once it works', async () => {
  s = await mfaSetup()
  const u = await s.addUser()
  const { secret } = await s.totp.enroll(u.id, u.email)
  const code = codeAt(secret, s.clock.now())
  s.deps.storage.sqlite!.run("CREATE TRIGGER test_fail_recovery BEFORE INSERT ON recovery_codes BEGIN SELECT RAISE(ABORT, 'injected failure'); END")

  expect(async () => await s.totp.confirm(u.id, code)).toThrow('injected failure')
  expect(await s.totp.status(u.id)).toBe('pending')
  expect(codesOf(u.id)).toBe(0)
  expect(await s.events('totp_enabled')).toHaveLength(0)

  s.deps.storage.sqlite!.run('DROP TRIGGER test_fail_recovery')
  // the failed attempt did not burn the time step either
  const { recoveryCodes } = await s.totp.confirm(u.id, code)
  expect(recoveryCodes).toHaveLength(10)
  expect(await s.totp.status(u.id)).toBe('active')
  expect(codesOf(u.id)).toBe(10)
  expect(await s.events('totp_enabled')).toHaveLength(1)
  expect(await s.events('recovery_codes_regenerated')).toHaveLength(1)
})
