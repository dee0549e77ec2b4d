/**
 * Regression: TOTP confirmation activated the factor, then stored its recovery codes in a second write;
 * a failure (or crash) between the two left an active factor with no recovery codes. Now one transaction.
 */
import { afterEach, expect, test } from 'bun:test'
import { codeAt, mfaSetup } from '../support/mfa'
import { sqlCount, sqlExec } from '../support/sql'

let s: Awaited<ReturnType<typeof mfaSetup>>
afterEach(() => s?.close())

const codesOf = (userId: string) => sqlCount(s.deps, 'SELECT count(*) AS n FROM recovery_codes WHERE user_id = ?', [userId])

test('a failing recovery-code insert leaves the factor pending, with no codes, and the same code confirms once it works', async () => {
  s = await mfaSetup()
  const u = await s.addUser()
  const { secret } = await s.totp.enroll(u.id, u.email)
  const code = codeAt(secret, s.clock.now())
  if (s.deps.storage.engine === 'postgres') await sqlExec(s.deps, '', [], "CREATE FUNCTION test_fail_recovery() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$")
  await sqlExec(s.deps, "CREATE TRIGGER test_fail_recovery BEFORE INSERT ON recovery_codes BEGIN SELECT RAISE(ABORT, 'injected failure'); END", [], 'CREATE TRIGGER test_fail_recovery BEFORE INSERT ON recovery_codes FOR EACH ROW EXECUTE FUNCTION test_fail_recovery()')

  // PostgreSQL's driver error is the cause of drizzle's "Failed query" error.
  const err = await s.totp.confirm(u.id, code).then(() => undefined, (e: Error) => e)
  expect(`${err?.message} ${(err?.cause as Error | undefined)?.message}`).toContain('injected failure')
  expect(await s.totp.status(u.id)).toBe('pending')
  expect(await codesOf(u.id)).toBe(0)
  expect(await s.events('totp_enabled')).toHaveLength(0)

  await sqlExec(s.deps, 'DROP TRIGGER test_fail_recovery', [], 'DROP TRIGGER test_fail_recovery ON recovery_codes')
  // the failed attempt did not burn the time step either
  const { recoveryCodes } = await s.totp.confirm(u.id, code)
  expect(recoveryCodes).toHaveLength(10)
  expect(await s.totp.status(u.id)).toBe('active')
  expect(await codesOf(u.id)).toBe(10)
  expect(await s.events('totp_enabled')).toHaveLength(1)
  expect(await s.events('recovery_codes_regenerated')).toHaveLength(1)
})
