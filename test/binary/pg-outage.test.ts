/**
 * PostgreSQL going away under the running binary: the server stays up, requests that need the database answer
 * 503 `storage_unavailable` with Retry-After (never a 500), readiness says the database is down, liveness stays
 * 200, and everything works again once the database is back. The binary reaches PostgreSQL through a TCP
 * relay the test cuts (test/support/cuttable-proxy.ts): open connections are reset and new ones refused.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { parsePgUrl } from '../../src/db/pg/client'
import { createTestDatabase, dropTestDatabase, PG_SKIP, PG_URL } from '../db/pg-helpers'
import { CuttableProxy } from '../support/cuttable-proxy'
import { call, signIn, startBinary, type Running } from './harness'

const made: string[] = []
let proxy: CuttableProxy | undefined
let server: Running | undefined
afterAll(async () => {
  await server?.stop()
  proxy?.stop()
  for (const u of made) await dropTestDatabase(u)
}, 30_000)

async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms
  let v = await what()
  while (!ok(v) && Date.now() < end) {
    await Bun.sleep(100)
    v = await what()
  }
  return v
}

describe.skipIf(!PG_URL)(`PostgreSQL outage under the binary${PG_SKIP}`, () => {
  test('503 storage_unavailable and readiness down while it is away; no 500, no crash; back to normal after', async () => {
    const url = await createTestDatabase()
    made.push(url)
    const target = parsePgUrl(url)
    proxy = new CuttableProxy(target.hostname, target.port)
    proxy.start()
    const viaProxy = new URL(url)
    viaProxy.port = String(proxy.port)
    server = await startBinary({ env: { BULWARK_DATABASE_URL: viaProxy.toString(), BULWARK_SECRET: 'pg-outage-test-secret-0123456789-abcdefghijk', BULWARK_ENV: 'test' } })
    const s = server
    const user = await signIn(s.base, 'before@example.com', 'a long outage passphrase 42', true)
    expect((await call(s.base, 'GET', '/health/ready')).status).toBe(200)

    proxy.cut()
    const register = await call(s.base, 'POST', '/v1/auth/register', { body: { email: 'during@example.com', password: 'a long outage passphrase 42' } })
    expect(register.status).toBe(503)
    expect(register.json.code).toBe('storage_unavailable')
    expect(Number(register.headers.get('retry-after'))).toBeGreaterThan(0)
    const login = await call(s.base, 'POST', '/v1/auth/login', { body: { email: 'before@example.com', password: 'a long outage passphrase 42' } })
    expect(login.status).toBe(503)
    expect(login.json.code).toBe('storage_unavailable')
    const refresh = await call(s.base, 'POST', '/v1/auth/refresh', { body: { refreshToken: user.refreshToken } })
    expect(refresh.status).toBe(503)
    const ready = await until(() => call(s.base, 'GET', '/health/ready'), (r) => r.status === 503)
    expect(ready.status).toBe(503)
    expect(ready.json.checks.database.status).toBe('down')
    expect(ready.json.checks.database.detail).toContain('the database cannot be reached')
    expect(ready.json.checks.database.detail).not.toMatch(/insert|storage_heartbeat|params/i)
    expect((await call(s.base, 'GET', '/health/live')).status).toBe(200)
    expect(s.proc.exitCode).toBeNull()

    proxy.restore()
    expect((await until(() => call(s.base, 'GET', '/health/ready'), (r) => r.status === 200)).status).toBe(200)
    const after = await until(
      () => call(s.base, 'POST', '/v1/auth/register', { body: { email: 'after@example.com', password: 'a long outage passphrase 42' } }),
      (r) => r.status !== 503,
    )
    expect(after.status).toBe(201)
    // The refresh token refused during the outage was not spent: it still works.
    expect((await call(s.base, 'POST', '/v1/auth/refresh', { body: { refreshToken: user.refreshToken } })).status).toBe(200)
    const log = s.stdout() + s.stderr()
    expect(log).not.toContain('"code":"internal"')
    expect(log).not.toContain('"status":500')
  }, 90_000)
})
