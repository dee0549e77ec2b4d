/** Two instances on one database and one Redis: a change on one reaches the other's caches at once. */
import { afterEach, describe, expect, test } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expectProblem, makeApp, signUp, STRONG_PASSWORD, type TestApp } from '../helpers'

const url = process.env.BULWARK_TEST_REDIS_URL
let apps: TestApp[] = []
afterEach(() => {
  for (const a of apps) a.close()
  apps = []
})

async function until(check: () => Promise<boolean>, ms = 2000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return true
    await Bun.sleep(10)
  }
  return false
}

describe('cache invalidation across instances', () => {
  test.skipIf(!url)('logout, disabling and a lock on one instance take effect on the other (needs BULWARK_TEST_REDIS_URL)', async () => {
    const env = { BULWARK_DB_PATH: join(mkdtempSync(join(tmpdir(), 'bw-relay-')), 'db.sqlite'), BULWARK_REDIS_URL: url!, BULWARK_REDIS_PREFIX: `bwtest-${crypto.randomUUID()}:` }
    const a = makeApp(env)
    apps.push(a)
    const b = makeApp(env)
    apps.push(b)
    await Promise.all([a.deps.relayReady, b.deps.relayReady])
    const { accessToken, email, user } = await signUp(a)
    expect((await b.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expect((await a.req('POST', '/v1/auth/logout', { token: accessToken })).status).toBe(204)
    expect(await until(async () => (await b.req('GET', '/v1/me', { token: accessToken })).status === 401)).toBe(true)
    expectProblem(await b.req('GET', '/v1/me', { token: accessToken }), 401, 'invalid_token')

    // A lock recorded on A is seen by B's cached lock state.
    const t2 = (await b.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })).body.accessToken
    expect(b.deps.lockout.isLocked(user.id, 'password').locked).toBe(false)
    for (let i = 0; i < 5; i++) await a.req('POST', '/v1/auth/login', { body: { email, password: 'wrong wrong wrong 1' }, ip: `198.51.100.${i + 1}` })
    expect(await until(async () => b.deps.lockout.isLocked(user.id, 'password').locked)).toBe(true)

    // Disabling on A ends B's cached session at once.
    expect((await b.req('GET', '/v1/me', { token: t2 })).status).toBe(200)
    a.deps.sqlite.run("UPDATE users SET status = 'disabled' WHERE id = ?", [user.id])
    a.deps.invalidation.emit({ kind: 'user', id: user.id })
    expect(await until(async () => (await b.req('GET', '/v1/me', { token: t2 })).status === 401)).toBe(true)
    expect(b.deps.relay!.received).toBeGreaterThan(0)
  })
})
