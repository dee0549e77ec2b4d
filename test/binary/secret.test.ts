/**
 * The master secret against the binary: a start with another BULWARK_SECRET is refused before anything
 * is written (exit 4), and `bulwark secret rotate` moves the data to a new secret with nothing lost.
 */
import { Database } from 'bun:sqlite'
import { describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { URI, type TOTP } from 'otpauth'
import { call, ensureBinary, runBinary, signIn, startBinary } from './harness'

const A = 'first-master-secret-0123456789-abcdefghijklmnop'
const B = 'second-master-secret-9876543210-ponmlkjihgfedcba'
// A fixed issuer: with BULWARK_PUBLIC_URL unset the issuer follows the port, which changes with port 0 across restarts.
const ISSUER = 'http://localhost:3000'
const EMAIL = 'secret-user@example.com'
const PASSWORD = 'a passphrase for the secret tests 9'

const dbFile = (workdir: string) => join(workdir, 'data', 'bulwark.sqlite')

/** The signing keys as stored, and a hash of the whole database file. */
function snapshot(workdir: string) {
  const db = new Database(dbFile(workdir), { readonly: true })
  try {
    const keys = db.query('SELECT * FROM signing_keys ORDER BY kid').all()
    const tables = db.query<{ n: number }, []>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get()!.n
    return { keys, tables, sha256: new Bun.CryptoHasher('sha256').update(readFileSync(dbFile(workdir))).digest('hex') }
  } finally {
    db.close()
  }
}

/** Runs `bulwark serve` expecting it to exit on its own; killed (and reported) if it is still up after 10 s. */
async function serveExpectingExit(workdir: string, env: Record<string, string>) {
  const binary = await ensureBinary()
  const p = Bun.spawn([binary, 'serve'], { cwd: workdir, env: { PATH: process.env.PATH ?? '', BULWARK_PORT: '0', ...env }, stdout: 'pipe', stderr: 'pipe' })
  const timer = setTimeout(() => p.kill('SIGKILL'), 10_000)
  const [code, stdout, stderr] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()])
  clearTimeout(timer)
  return { code, stdout, stderr }
}

describe('a different BULWARK_SECRET on an existing database', () => {
  test('is refused with exit 4 and one line, and the database is left exactly as it was', async () => {
    const workdir = mkdtempSync(join(tmpdir(), 'bw-secret-'))
    try {
      const first = await startBinary({ workdir, env: { BULWARK_SECRET: A, BULWARK_PUBLIC_URL: ISSUER } })
      await signIn(first.base, EMAIL, PASSWORD, true)
      expect(await first.stop()).toBe(0)
      const before = snapshot(workdir)

      const r = await serveExpectingExit(workdir, { BULWARK_SECRET: B })
      expect(r.code).toBe(4)
      const lines = r.stderr.trim().split('\n')
      expect(lines.length).toBe(1)
      expect(lines[0]).toMatch(/^bulwark: refusing to start: BULWARK_SECRET does not match this database/)
      expect(lines[0]).toContain('bulwark secret rotate')
      expect(r.stdout).not.toContain('listening')
      expect(snapshot(workdir)).toEqual(before)

      // The right secret still opens it.
      const again = await startBinary({ workdir, env: { BULWARK_SECRET: A, BULWARK_PUBLIC_URL: ISSUER } })
      await signIn(again.base, EMAIL, PASSWORD)
      await again.stop()
    } finally {
      rmSync(workdir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe('bulwark secret rotate', () => {
  test('--help prints its own help and touches nothing', async () => {
    const r = await runBinary(['secret', 'rotate', '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('Usage: bulwark secret rotate')
    expect(r.stdout).toContain('BULWARK_OLD_SECRET')
    const usage = await runBinary(['secret', 'spin'])
    expect(usage.code).toBe(64)
  })

  test('data under A with a TOTP user and a live session, rotated to B: TOTP, recovery codes, refresh and the old access token still work, JWKS unchanged; A is refused afterwards', async () => {
    const workdir = mkdtempSync(join(tmpdir(), 'bw-secret-'))
    try {
      const srv = await startBinary({ workdir, env: { BULWARK_SECRET: A, BULWARK_PUBLIC_URL: ISSUER } })
      const s = await signIn(srv.base, EMAIL, PASSWORD, true)
      const enrol = await call(srv.base, 'POST', '/v1/me/mfa/totp', { token: s.accessToken })
      expect(enrol.status).toBe(200)
      const totp = URI.parse(enrol.json.otpauthUrl) as TOTP
      const confirmed = await call(srv.base, 'POST', '/v1/me/mfa/totp/confirm', { token: s.accessToken, body: { code: totp.generate() } })
      expect(confirmed.status).toBe(200)
      const recoveryCodes = confirmed.json.recoveryCodes as string[]
      const jwksBefore = (await call(srv.base, 'GET', '/.well-known/jwks.json')).json
      await srv.stop()
      const keysBefore = snapshot(workdir).keys as { private_jwk_enc: string }[]

      const wrongOld = await runBinary(['secret', 'rotate'], { cwd: workdir, env: { BULWARK_OLD_SECRET: 'not-the-secret-0123456789-abcdefghijklmnopq', BULWARK_SECRET: B } })
      expect(wrongOld.code).toBe(4)
      expect(wrongOld.stderr).toContain('BULWARK_OLD_SECRET does not match this database')
      expect(snapshot(workdir).keys).toEqual(keysBefore)

      const r = await runBinary(['secret', 'rotate'], { cwd: workdir, env: { BULWARK_OLD_SECRET: A, BULWARK_SECRET: B } })
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      expect(r.stdout).toContain('1 totp_factors')
      const keysAfter = snapshot(workdir).keys as { private_jwk_enc: string }[]
      expect(keysAfter.map((k) => k.private_jwk_enc)).not.toEqual(keysBefore.map((k) => k.private_jwk_enc))

      const again = await runBinary(['secret', 'rotate'], { cwd: workdir, env: { BULWARK_OLD_SECRET: A, BULWARK_SECRET: B } })
      expect(again.code).toBe(0)
      expect(again.stdout).toContain('already uses the new secret')

      const refusedA = await serveExpectingExit(workdir, { BULWARK_SECRET: A })
      expect(refusedA.code).toBe(4)

      const next = await startBinary({ workdir, env: { BULWARK_SECRET: B, BULWARK_PUBLIC_URL: ISSUER } })
      try {
        expect((await call(next.base, 'GET', '/.well-known/jwks.json')).json).toEqual(jwksBefore)
        expect((await call(next.base, 'GET', '/v1/me', { token: s.accessToken })).status).toBe(200)
        // Refresh tokens are hashed with a key kept across the rotation.
        const refreshed = await call(next.base, 'POST', '/v1/auth/refresh', { body: { refreshToken: s.refreshToken } })
        expect(refreshed.status).toBe(200)
        // TOTP decrypts under B: sign in with a code (the next step's, as the current one was spent on confirm).
        const login = await call(next.base, 'POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD } })
        expect(login.json.mfaRequired).toBe(true)
        const code = totp.generate({ timestamp: Date.now() + 30_000 })
        const viaTotp = await call(next.base, 'POST', '/v1/auth/mfa/verify', { body: { mfaToken: login.json.mfaToken, totp: code } })
        expect(viaTotp.status).toBe(200)
        expect(viaTotp.json.accessToken).toBeString()
        const login2 = await call(next.base, 'POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD } })
        const viaCode = await call(next.base, 'POST', '/v1/auth/mfa/verify', { body: { mfaToken: login2.json.mfaToken, recoveryCode: recoveryCodes[0] } })
        expect(viaCode.status).toBe(200)
      } finally {
        await next.stop()
      }
    } finally {
      rmSync(workdir, { recursive: true, force: true })
    }
  }, 90_000)
})
