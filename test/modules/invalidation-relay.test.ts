/** Two instances on one database and one Redis: a change on one reaches the other's caches at once. */
import { afterEach, describe, expect, test } from 'bun:test'
import { expectProblem, makeApp, sharedDatabase, signUp, STRONG_PASSWORD, type TestApp } from '../helpers'
import { OwnRedis } from '../support/own-redis'
import { sqlExec } from '../support/sql'

const url = process.env.BULWARK_TEST_REDIS_URL
let apps: TestApp[] = []
const drops: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const a of apps) await a.close()
  apps = []
  for (const drop of drops.splice(0)) await drop()
})

/** One database for both instances (a SQLite file; a PostgreSQL database), removed after the test. */
async function sharedDb(): Promise<Record<string, string>> {
  const { env, drop } = await sharedDatabase('bw-relay-')
  drops.push(drop)
  return env
}

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
    const env = { ...(await sharedDb()), BULWARK_REDIS_URL: url!, BULWARK_REDIS_PREFIX: `bwtest-${crypto.randomUUID()}:` }
    const a = await makeApp(env)
    apps.push(a)
    const b = await makeApp(env)
    apps.push(b)
    await Promise.all([a.deps.relayReady, b.deps.relayReady])
    const { accessToken, email, user } = await signUp(a)
    expect((await b.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
    expect((await a.req('POST', '/v1/auth/logout', { token: accessToken })).status).toBe(204)
    expect(await until(async () => (await b.req('GET', '/v1/me', { token: accessToken })).status === 401)).toBe(true)
    expectProblem(await b.req('GET', '/v1/me', { token: accessToken }), 401, 'invalid_token')

    // A lock recorded on A is seen by B's cached lock state.
    const t2 = (await b.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })).body.accessToken
    expect((await b.deps.lockout.isLocked(user.id, 'password')).locked).toBe(false)
    for (let i = 0; i < 5; i++) await a.req('POST', '/v1/auth/login', { body: { email, password: 'wrong wrong wrong 1' }, ip: `198.51.100.${i + 1}` })
    expect(await until(async () => (await b.deps.lockout.isLocked(user.id, 'password')).locked)).toBe(true)

    // Disabling on A ends B's cached session at once.
    expect((await b.req('GET', '/v1/me', { token: t2 })).status).toBe(200)
    await sqlExec(a.deps, "UPDATE users SET status = 'disabled' WHERE id = ?", [user.id])
    a.deps.invalidation.emit({ kind: 'user', id: user.id })
    expect(await until(async () => (await b.req('GET', '/v1/me', { token: t2 })).status === 401)).toBe(true)
    expect(b.deps.relay!.received).toBeGreaterThan(0)
  })

  // Regression: the relay subscribed once, so after any Redis reconnect invalidations stopped for good
  // (logout on A took the cache TTL on B) while readiness said Redis was fine.
  test.skipIf(!OwnRedis.available())('after a Redis restart the relay subscribes again, drops what it may have missed and readiness tracks it (needs redis-server)', async () => {
    const redis = new OwnRedis()
    await redis.start()
    try {
      const env = { ...(await sharedDb()), BULWARK_REDIS_URL: redis.url, BULWARK_REDIS_PREFIX: `bwtest-${crypto.randomUUID()}:` }
      const a = await makeApp(env)
      apps.push(a)
      const b = await makeApp(env)
      apps.push(b)
      await Promise.all([a.deps.relayReady, b.deps.relayReady])
      const relayStatus = async (x: TestApp) => (await x.req('GET', '/health/ready')).body.checks.relay?.status
      expect(await relayStatus(b)).toBe('ok')

      // 1. A logout on A while Redis is down never reaches B over pub/sub; B must still refuse the token
      //    on its next request once its relay is back (it drops its caches on re-subscription).
      const { accessToken, email, user } = await signUp(a)
      expect((await b.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
      const listed = async () => (await b.deps.usersAdmin.list({ limit: 100 } as never)).items.find((i) => i.id === user.id)?.roles
      expect(await listed()).toEqual(['user']) // B's users list keeps the entry
      await redis.stop()
      expect(await until(async () => (await relayStatus(b)) === 'degraded')).toBe(true)
      expect((await b.req('GET', '/health/ready')).body.checks.relay.detail).toContain('not subscribed')
      expect((await a.req('POST', '/v1/auth/logout', { token: accessToken })).status).toBe(204)
      expect((await b.req('GET', '/v1/me', { token: accessToken })).status).toBe(200) // cached: the outage window
      await a.deps.rbac.assignSystem(user.id, 'moderator') // its event is lost too
      expect(await listed()).toEqual(['user'])
      await redis.start()
      expect(await until(async () => (await relayStatus(b)) === 'ok', 5000)).toBe(true)
      expectProblem(await b.req('GET', '/v1/me', { token: accessToken }), 401, 'invalid_token')
      expect(await listed()).toEqual(['moderator', 'user']) // the resync dropped the list's entries too
      expect(b.deps.relay!.resubscriptions).toBe(1)
      expect(b.logs.filter((l) => l.msg === 'cache invalidation relay is not subscribed; caches fall back to their TTL until it is back')).toHaveLength(1)

      // 2. The new subscription carries events again: a logout on A reaches B's cache at once.
      expect(await until(async () => (await relayStatus(a)) === 'ok', 5000)).toBe(true)
      const t2 = (await a.req('POST', '/v1/auth/login', { body: { email, password: STRONG_PASSWORD } })).body.accessToken
      expect((await b.req('GET', '/v1/me', { token: t2 })).status).toBe(200)
      const before = b.deps.relay!.received
      expect((await a.req('POST', '/v1/auth/logout', { token: t2 })).status).toBe(204)
      expect(await until(async () => b.deps.relay!.received > before)).toBe(true)
      expectProblem(await b.req('GET', '/v1/me', { token: t2 }), 401, 'invalid_token')
    } finally {
      for (const x of apps) await x.close()
      apps = []
      await redis.stop()
    }
  })

  test.skipIf(!OwnRedis.available())('Redis down at start: the relay subscribes once it is up and drops what was cached meanwhile (needs redis-server)', async () => {
    const redis = new OwnRedis()
    try {
      const env = { ...(await sharedDb()), BULWARK_REDIS_URL: redis.url, BULWARK_REDIS_PREFIX: `bwtest-${crypto.randomUUID()}:` }
      const a = await makeApp(env)
      apps.push(a)
      const b = await makeApp(env)
      apps.push(b)
      await Promise.all([a.deps.relayReady, b.deps.relayReady])
      expect((await b.req('GET', '/health/ready')).body.checks.relay.status).toBe('degraded')
      const { accessToken } = await signUp(a)
      expect((await b.req('GET', '/v1/me', { token: accessToken })).status).toBe(200)
      expect((await a.req('POST', '/v1/auth/logout', { token: accessToken })).status).toBe(204)
      await redis.start()
      expect(await until(async () => (await b.req('GET', '/health/ready')).body.checks.relay.status === 'ok', 5000)).toBe(true)
      expectProblem(await b.req('GET', '/v1/me', { token: accessToken }), 401, 'invalid_token')
    } finally {
      for (const x of apps) await x.close()
      apps = []
      await redis.stop()
    }
  })
})
