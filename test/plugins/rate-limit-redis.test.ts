/**
 * The Redis store against a real Redis (BULWARK_TEST_REDIS_URL; CI sets it), each run under its own
 * random key prefix, and the fallback to memory when Redis goes away (a local TCP proxy is stopped
 * and restarted in front of the real server, so nothing else that uses the Redis is disturbed).
 */
import { afterAll, afterEach, describe, expect, test } from 'bun:test'
import type { Socket, TCPSocketListener } from 'bun'
import { FakeClock } from '../../src/lib/clock'
import { randomToken } from '../../src/lib/crypto'
import { limitedApp } from './rate-limit-app'

const url = process.env.BULWARK_TEST_REDIS_URL
const prefix = `bulwark-test:${randomToken(6)}:`
const apps: Awaited<ReturnType<typeof limitedApp>>[] = []

async function app(env: Record<string, string>, clock = new FakeClock()) {
  const a = await limitedApp({ BULWARK_REDIS_PREFIX: prefix, ...env }, clock)
  apps.push(a)
  return a
}

afterEach(async () => {
  for (const a of apps.splice(0)) await a.close()
})

/** The store's state events are written off the request path (from the breaker's callback): wait up to ~2 s for `n`. */
async function eventsSoon(a: Awaited<ReturnType<typeof limitedApp>>, type: string, n = 1) {
  for (let i = 0; i < 200 && (await a.events(type)).length < n; i++) await Bun.sleep(10)
  return await a.events(type)
}

afterAll(async () => {
  if (!url) return
  const { RedisClient } = await import('bun')
  const c = new RedisClient(url)
  const keys = (await c.send('KEYS', [`${prefix}*`])) as string[]
  if (keys.length) await c.send('DEL', keys)
  await c.close()
})

/** A TCP proxy in front of Redis that can be stopped (Redis "goes away") and started again on the same port. */
class Proxy {
  port = 0
  private listener: TCPSocketListener<{ up?: Socket; queue: Uint8Array[] }> | undefined
  private sockets = new Set<Socket<any>>()

  constructor(private readonly target: { hostname: string; port: number }) {}

  start(): void {
    const sockets = this.sockets
    const target = this.target
    this.listener = Bun.listen<{ up?: Socket; queue: Uint8Array[] }>({
      hostname: '127.0.0.1',
      port: this.port,
      socket: {
        open: async (client) => {
          client.data = { queue: [] }
          sockets.add(client)
          await Bun.connect({
            hostname: target.hostname,
            port: target.port,
            socket: {
              open: (up) => {
                sockets.add(up)
                client.data.up = up
                for (const q of client.data.queue) up.write(q)
                client.data.queue = []
              },
              data: (_up, d) => void client.write(d),
              close: () => void client.end(),
              error: () => void client.end(),
            },
          }).catch(() => client.end())
        },
        data: (client, d) => {
          if (client.data.up) client.data.up.write(d)
          else client.data.queue.push(new Uint8Array(d))
        },
        close: (client) => void client.data.up?.end(),
        error: (client) => void client.data.up?.end(),
      },
    })
    this.port = this.listener.port
  }

  stop(): void {
    this.listener?.stop(true)
    for (const s of this.sockets) s.end()
    this.sockets.clear()
  }
}

describe('rate limit on Redis', () => {
  test.skipIf(!url)('two instances share one counter and one penalty (needs BULWARK_TEST_REDIS_URL)', async () => {
    const clock = new FakeClock()
    const env = { BULWARK_REDIS_URL: url!, BULWARK_RATE_LIMIT_ANON: '3' }
    const a = await app(env, clock)
    const b = await app(env, clock)
    const ip = '192.0.2.77'
    expect((await a.req('GET', '/v1/ping', { ip })).headers.get('ratelimit')).toBe('"ip";r=2;t=60')
    expect((await b.req('GET', '/v1/ping', { ip })).headers.get('ratelimit')).toBe('"ip";r=1;t=60')
    expect((await a.req('GET', '/v1/ping', { ip })).status).toBe(200)
    const refused = await b.req('GET', '/v1/ping', { ip })
    expect(refused.status).toBe(429)
    expect(refused.headers.get('retry-after')).toBe('60')
    // the block made on b is seen by a, and the storm records one event across both instances
    for (let i = 0; i < 3; i++) expect((await a.req('GET', '/v1/ping', { ip })).status).toBe(429)
    expect((await a.events('rate_limited')).length + (await b.events('rate_limited')).length).toBe(1)
    // escalation is shared too: the next block is four windows long
    clock.advance(60_000)
    await a.req('GET', '/v1/ping', { ip })
    await a.req('GET', '/v1/ping', { ip })
    await b.req('GET', '/v1/ping', { ip })
    expect((await b.req('GET', '/v1/ping', { ip })).headers.get('retry-after')).toBe('240')
    expect(a.deps.rateLimit.resilient!.breaker.state).toBe('closed')
  })

  test.skipIf(!url)('the per-account login limit holds across instances (needs BULWARK_TEST_REDIS_URL)', async () => {
    const env = { BULWARK_REDIS_URL: url!, BULWARK_RATE_LIMIT_ROUTES: 'login-account=3/1m' }
    const a = await app(env)
    const b = await app(env)
    const body = { email: 'shared@example.com', password: 'x' }
    const statuses = []
    for (let i = 0; i < 4; i++) statuses.push((await (i % 2 ? b : a).req('POST', '/v1/auth/login', { body, ip: `198.51.100.${i + 1}` })).status)
    expect(statuses).toEqual([401, 401, 401, 429])
  })

  test.skipIf(!url)('the readiness check reports Redis (needs BULWARK_TEST_REDIS_URL)', async () => {
    const a = await app({ BULWARK_REDIS_URL: url! })
    const res = await a.req('GET', '/health/ready')
    expect(res.status).toBe(200)
    expect(res.body.checks.redis.status).toBe('ok')
  })

  test.skipIf(!url)('Redis going away mid-test: memory answers without a 500, then Redis takes over again (needs BULWARK_TEST_REDIS_URL)', async () => {
    const target = new URL(url!)
    const proxy = new Proxy({ hostname: target.hostname, port: Number(target.port || 6379) })
    proxy.start()
    try {
      const clock = new FakeClock()
      const a = await app({ BULWARK_REDIS_URL: `redis://127.0.0.1:${proxy.port}`, BULWARK_RATE_LIMIT_ANON: '5' }, clock)
      const breaker = a.deps.rateLimit.resilient!.breaker
      expect((await a.req('GET', '/v1/ping')).status).toBe(200)
      expect(breaker.state).toBe('closed')

      proxy.stop()
      for (let i = 0; i < 3; i++) {
        const res = await a.req('GET', '/v1/ping')
        expect(res.status).toBe(200)
        expect(res.headers.get('ratelimit-policy')).toBe('"ip";q=5;w=60')
      }
      expect(breaker.state).toBe('open')
      expect((await eventsSoon(a, 'rate_limit_store_degraded')).length).toBe(1)
      // limits still hold on the in-memory fallback
      await a.req('GET', '/v1/ping')
      await a.req('GET', '/v1/ping')
      expect((await a.req('GET', '/v1/ping')).status).toBe(429)
      const ready = await a.req('GET', '/health/ready')
      expect(ready.status).toBe(200)
      expect(ready.body.status).toBe('degraded')
      expect(ready.body.checks.redis.status).toBe('down')

      proxy.start()
      clock.advance(5000) // the breaker's cool-down; the next request probes Redis
      expect((await a.req('GET', '/v1/ping', { ip: '198.51.100.5' })).status).toBe(200)
      expect(breaker.state).toBe('closed')
      expect((await eventsSoon(a, 'rate_limit_store_restored')).length).toBe(1)
    } finally {
      proxy.stop()
    }
  })
})

test('a Redis that is not there: requests are served from memory, no 500s', async () => {
  // Port 9 (discard) on loopback: nothing listens, every connect is refused at once.
  const a = await app({ BULWARK_REDIS_URL: 'redis://127.0.0.1:9', BULWARK_RATE_LIMIT_ANON: '4' })
  const statuses = []
  for (let i = 0; i < 6; i++) statuses.push((await a.req('GET', '/v1/ping')).status)
  expect(statuses).toEqual([200, 200, 200, 200, 429, 429])
  expect(a.deps.rateLimit.resilient!.breaker.state).toBe('open')
  expect((await eventsSoon(a, 'rate_limit_store_degraded')).length).toBe(1)
})

test('a hung Redis (accepts, never answers) costs a short timeout, never a 500', async () => {
  const silent = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data: () => {} } })
  try {
    const a = await app({ BULWARK_REDIS_URL: `redis://127.0.0.1:${silent.port}`, BULWARK_REDIS_TIMEOUT: '50ms', BULWARK_RATE_LIMIT_ANON: '10' })
    const statuses = []
    for (let i = 0; i < 4; i++) statuses.push((await a.req('GET', '/v1/ping')).status)
    expect(statuses).toEqual([200, 200, 200, 200])
    expect(a.deps.rateLimit.resilient!.breaker.state).toBe('open')
    const log = await eventsSoon(a, 'rate_limit_store_degraded')
    expect(log.length).toBe(1)
  } finally {
    silent.stop(true)
  }
})
