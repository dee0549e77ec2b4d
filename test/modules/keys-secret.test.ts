/** Master-secret rotation in process: what is re-encrypted, what is kept, and the guard for new encrypted columns. */
import { afterEach, describe, expect, test } from 'bun:test'
import { Glob } from 'bun'
import { join } from 'node:path'
import { decrypt, deriveKeys } from '../../src/lib/crypto'
import { effectiveKeys, ENCRYPTED_IN, rotateSecret, SecretMismatchError } from '../../src/modules/keys/secret'
import { KeyService } from '../../src/modules/keys/service'
import { makeApp, signUp, type TestApp } from '../helpers'
import { sqlRows } from '../support/sql'

const OLD = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz' // testConfig's secret
const NEW = 'rotated-secret-9876543210-zyxwvutsrqponmlkjihgfedcba'
let a: TestApp
afterEach(() => a?.close())

describe('rotateSecret', () => {
  test('re-encrypts signing keys, TOTP secrets and refresh successors under the new secret and keeps the hashing keys', async () => {
    a = await makeApp()
    const { accessToken, refreshToken } = await signUp(a)
    const refreshed = await a.req('POST', '/v1/auth/refresh', { body: { refreshToken } })
    expect(refreshed.status).toBe(200)
    const enrol = await a.req('POST', '/v1/me/mfa/totp', { token: accessToken })
    expect(enrol.status).toBe(200)
    const before = deriveKeys(OLD)

    const r = await rotateSecret(a.deps.db, OLD, NEW, a.clock.now())
    expect(r.reencrypted).toEqual({ signing_keys: 1, totp_factors: 1, refresh_tokens: 1 })
    expect(r.skipped).toEqual({})

    const after = await effectiveKeys(a.deps.db, NEW)
    expect(after.encryption.equals(deriveKeys(NEW).encryption)).toBe(true)
    expect(after.tokenHash.equals(before.tokenHash)).toBe(true)
    expect(after.csrf.equals(before.csrf)).toBe(true)
    expect(after.cursor.equals(before.cursor)).toBe(true)
    expect(() => effectiveKeys(a.deps.db, OLD)).toThrow(SecretMismatchError)

    const totp = (await sqlRows<{ user_id: string; secret_enc: string }>(a.deps, 'SELECT user_id, secret_enc FROM totp_factors'))[0]!
    expect(decrypt(after.encryption, totp.secret_enc, `totp:${totp.user_id}`)).toBe(enrol.body.secret)
    const spent = (await sqlRows<{ id: string; successor_enc: string }>(a.deps, 'SELECT id, successor_enc FROM refresh_tokens WHERE successor_enc IS NOT NULL'))[0]!
    expect(decrypt(after.encryption, spent.successor_enc, `rt:${spent.id}`)).toBe(refreshed.body.refreshToken)
    // An instance with the new secret signs with the same key (same kid, JWKS unchanged).
    const signer = new KeyService({ ...a.deps, keys: after })
    await signer.init()
    expect(await signer.currentKid()).toBe(await a.deps.signer.currentKid())
  })

  test('effectiveKeys refuses a secret that does not decrypt the current signing key (the check once the file is open)', async () => {
    a = await makeApp()
    expect(() => effectiveKeys(a.deps.db, NEW)).toThrow(SecretMismatchError)
    expect((await effectiveKeys(a.deps.db, OLD)).encryption.equals(deriveKeys(OLD).encryption)).toBe(true)
  })

  test('a second rotation (B to C) keeps the hashing keys of the first secret', async () => {
    a = await makeApp()
    const third = 'third-secret-abcdefghijklmnop-0123456789-qrstuvwxyz'
    await rotateSecret(a.deps.db, OLD, NEW, a.clock.now())
    await rotateSecret(a.deps.db, NEW, third, a.clock.now())
    expect((await effectiveKeys(a.deps.db, third)).tokenHash.equals(deriveKeys(OLD).tokenHash)).toBe(true)
    expect(() => effectiveKeys(a.deps.db, NEW)).toThrow(SecretMismatchError)
  })
})

test('every file that encrypts with the derived key is covered by the secret rotation (add new encrypted columns to rotateSecret)', async () => {
  const root = join(import.meta.dir, '..', '..')
  const users: string[] = []
  for (const file of new Glob('src/**/*.ts').scanSync({ cwd: root })) {
    if (file === 'src/lib/crypto.ts' || file === 'src/modules/keys/secret.ts') continue
    if (/(?<![\w.])encrypt\(/.test(await Bun.file(join(root, file)).text())) users.push(file)
  }
  expect(users.sort()).toEqual([...ENCRYPTED_IN].sort())
})

test('a server environment that still holds BULWARK_OLD_SECRET gets a warning', async () => {
  const { configWarnings, testConfig } = await import('../../src/config')
  expect(configWarnings(testConfig({ BULWARK_OLD_SECRET: OLD })).join('\n')).toContain('BULWARK_OLD_SECRET is set')
  expect(configWarnings(testConfig()).join('\n')).not.toContain('BULWARK_OLD_SECRET')
})
