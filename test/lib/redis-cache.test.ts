/**
 * The two-tier cache (src/lib/redis-cache.ts) against a real Redis: BULWARK_TEST_REDIS_URL for sharing,
 * invalidation, TTL and clear (each run under its own random prefix); a private redis-server (stopped and
 * restarted) and a TCP proxy in front of it (cut, or made to swallow traffic) for the degraded mode.
 */
import { afterAll, afterEach, describe, expect, test } from 'bun:test'
import { RedisClient, type Socket, type TCPSocketListener } from 'bun'
import { LruCache } from '../../src/lib/cache'
import { FakeClock } from '../../src/lib/clock'
import { createLogger } from '../../src/lib/logger'
import { Redis } from '../../src/lib/redis'
import { AsyncLruCache, asyncLruCaches, jsonCodec, omitting, plainJsonCodec, redisCaches, type RedisCacheFactory, type RedisCacheOptions, type RedisCacheStats } from '../../src/lib/redis-cache'
import { OwnRedis } from '../support/own-redis'

const url = process.env.BULWARK_TEST_REDIS_URL
const prefix = `bulwark-test:${crypto.randomUUID().slice(0, 8)}:`
const logs: { level: string; msg: string }[] = []
const logger = createLogger('info', {
  write: (line: string) => {
    const j = JSON.parse(line)
    logs.push({ level: j.level, msg: j.msg })
  },
})

const opened: { close(): void }[] = []
afterEach(() => {
  for (const x of opened.splice(0).reverse()) x.close()
})
afterAll(async () => {
  if (!url) return
  const c = new RedisClient(url)
  const keys = (await c.send('KEYS', [`${prefix}*`])) as string[]
  if (keys.length) await c.send('DEL', keys)
  c.close()
})

/** One "instance": its own Redis connection, breaker, subscriber and local tiers. */
async function instance(redisUrl: string, o: Partial<RedisCacheOptions> = {}) {
  const clock = (o.clock as FakeClock | undefined) ?? new FakeClock()
  const redis = new Redis(redisUrl, 200)
  const caches = redisCaches(redis, { url: redisUrl, prefix, maxEntries: 100, ttlMs: 60_000, clock, logger, timeoutMs: 200, ...o })
  opened.push(redis, caches)
  await caches.ready
  return { caches, clock, redis }
}

function raw(redisUrl = url!) {
  const c = new RedisClient(redisUrl)
  c.onclose = () => {}
  opened.push(c)
  return c
}

async function until(check: () => boolean | Promise<boolean>, ms = 3000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return true
    await Bun.sleep(10)
  }
  return false
}

const st = (c: { stats(): unknown }) => c.stats() as RedisCacheStats

describe('async cache interface', () => {
  test('AsyncLruCache: the in-process LRU behind the async interface', async () => {
    const c = new AsyncLruCache<string, number>(new LruCache({ maxEntries: 10, ttlMs: 1000 }))
    expect(await c.get('a')).toBeUndefined()
    await c.set('a', 1)
    expect(await c.get('a')).toBe(1)
    await c.delete('a')
    expect(await c.get('a')).toBeUndefined()
    await c.set('b', 2)
    await c.clear()
    expect(c.stats()).toEqual({ hits: 1, misses: 2, size: 0, max: 10 })
    const clock = new FakeClock()
    const made = asyncLruCaches({ maxEntries: 10, ttlMs: 1000, clock })<string, number>('x')
    await made.set('k', 1)
    clock.advance(1001)
    expect(await made.get('k')).toBeUndefined()
  })

  test('jsonCodec keeps Map, Set, Date and BigInt, and objects that hold a "$t" key', () => {
    const value = { grants: new Map([['users:read', 'users:*']]), ids: new Set(['a', 'b']), at: new Date(5), n: 7n, odd: { $t: 'Map', v: 1 }, list: [new Set([1])] }
    const back = jsonCodec.decode(jsonCodec.encode(value))
    expect(back).toEqual(value)
    expect(back.grants).toBeInstanceOf(Map)
    expect(back.ids).toBeInstanceOf(Set)
    expect(back.at).toBeInstanceOf(Date)
    // What the tags prevent: plain JSON loses a Map without a word.
    expect(plainJsonCodec.decode(plainJsonCodec.encode({ ...value, n: 7 })).grants).toEqual({})
    const memoless = omitting<{ a: number; memo?: unknown }>(['memo'])
    expect(memoless.decode(memoless.encode({ a: 1, memo: { gen: 3 } }))).toEqual({ a: 1 })
  })
})

describe('two-tier cache on Redis', () => {
  test.skipIf(!url)('two instances share values: a set on A is a Redis hit on B, under <prefix>cache:<name>:<key> with a TTL (needs BULWARK_TEST_REDIS_URL)', async () => {
    const a = await instance(url!)
    const b = await instance(url!)
    const ca = a.caches<string, { id: string; n: number }>('sessions')
    const cb = b.caches<string, { id: string; n: number }>('sessions')
    expect(await cb.get('s1')).toBeUndefined()
    expect(st(cb)).toMatchObject({ misses: 1, remoteMisses: 1, errors: 0 })
    await ca.set('s1', { id: 's1', n: 1 })
    expect(await cb.get('s1')).toEqual({ id: 's1', n: 1 })
    expect(st(cb)).toMatchObject({ hits: 1, remoteHits: 1, localHits: 0, size: 1 })
    // the second read is local
    expect(await cb.get('s1')).toEqual({ id: 's1', n: 1 })
    expect(st(cb)).toMatchObject({ hits: 2, remoteHits: 1, localHits: 1 })
    const r = raw()
    expect(JSON.parse((await r.get(`${prefix}cache:sessions:s1`))!)).toEqual({ id: 's1', n: 1 })
    const pttl = Number(await r.send('PTTL', [`${prefix}cache:sessions:s1`]))
    expect(pttl).toBeGreaterThan(0)
    expect(pttl).toBeLessThanOrEqual(60_000)
    // another name is another cache
    expect(await b.caches<string, number>('lockouts').get('s1')).toBeUndefined()
  })

  test.skipIf(!url)('delete on A makes B miss although B held the value locally; a set on A replaces B\'s local copy (needs BULWARK_TEST_REDIS_URL)', async () => {
    const a = await instance(url!)
    const b = await instance(url!)
    const ca = a.caches<string, string>('sessions')
    const cb = b.caches<string, string>('sessions')
    await ca.set('s2', 'live')
    expect(await cb.get('s2')).toBe('live')
    expect(await cb.get('s2')).toBe('live')
    expect(st(cb).localHits).toBe(1)

    const seen = b.caches.received()
    await ca.set('s2', 'step-up')
    expect(await until(() => b.caches.received() > seen)).toBe(true)
    expect(await cb.get('s2')).toBe('step-up')

    await ca.delete('s2')
    expect(await until(() => b.caches.received() > seen + 1)).toBe(true)
    const before = st(cb)
    expect(await cb.get('s2')).toBeUndefined()
    expect(st(cb)).toMatchObject({ misses: before.misses + 1, localHits: before.localHits, remoteMisses: before.remoteMisses + 1 })
    expect(await raw().exists(`${prefix}cache:sessions:s2`)).toBe(false)
  })

  test.skipIf(!url)('entries expire: PX in Redis, the local tier on the injected clock, and a local copy lives no longer than its Redis entry (needs BULWARK_TEST_REDIS_URL)', async () => {
    const a = await instance(url!, { ttlMs: 300 })
    const ca = a.caches<string, number>('lockouts')
    await ca.set('u1:password', 1)
    const pttl = Number(await raw().send('PTTL', [`${prefix}cache:lockouts:u1:password`]))
    expect(pttl).toBeGreaterThan(0)
    expect(pttl).toBeLessThanOrEqual(300)
    expect(await until(async () => !(await raw().exists(`${prefix}cache:lockouts:u1:password`)))).toBe(true)
    a.clock.advance(301) // the local tier's own TTL
    expect(await ca.get('u1:password')).toBeUndefined()
    expect(st(ca)).toMatchObject({ localHits: 0, remoteMisses: 1 })

    // Filled from Redis with 5 s left: the local copy is gone after 5 s, though the local TTL is 60 s.
    const b = await instance(url!)
    const cb = b.caches<string, number>('lockouts')
    await raw().send('SET', [`${prefix}cache:lockouts:u2:password`, '2', 'PX', '5000'])
    expect(await cb.get('u2:password')).toBe(2)
    b.clock.advance(4000)
    expect(await cb.get('u2:password')).toBe(2)
    expect(st(cb)).toMatchObject({ remoteHits: 1, localHits: 1 })
    b.clock.advance(1001)
    expect(await cb.get('u2:password')).toBe(2)
    expect(st(cb)).toMatchObject({ remoteHits: 2, localHits: 1 })
  })

  test.skipIf(!url)('values with Maps and a per-cache codec travel between instances (needs BULWARK_TEST_REDIS_URL)', async () => {
    const codecs = { 'rbac-users': omitting(['memo']) }
    const a = await instance(url!, { codecs })
    const b = await instance(url!, { codecs })
    await a.caches<string, { grants: Map<string, string> }>('rbac-roles').set('r1', { grants: new Map([['users:read', 'users:*']]) })
    const role = await b.caches<string, { grants: Map<string, string> }>('rbac-roles').get('r1')
    expect(role?.grants.get('users:read')).toBe('users:*')
    const local = { status: 'active', roleIds: ['r1'], memo: { gen: 4 } }
    await a.caches<string, typeof local>('rbac-users').set('u1', local)
    expect(await b.caches<string, typeof local>('rbac-users').get('u1')).toEqual({ status: 'active', roleIds: ['r1'] } as typeof local)
  })

  test.skipIf(!url)('clear drops every key of that cache in Redis (several SCAN rounds) and the other instances\' local copies, nothing else (needs BULWARK_TEST_REDIS_URL)', async () => {
    const a = await instance(url!, { maxEntries: 5000 })
    const b = await instance(url!)
    const ca = a.caches<string, number>('rbac-users')
    const cb = b.caches<string, number>('rbac-users')
    await Promise.all(Array.from({ length: 2500 }, (_, i) => ca.set(`u${i}`, i)))
    await a.caches<string, number>('rbac-roles').set('keep', 1)
    expect(await cb.get('u7')).toBe(7)
    const seen = b.caches.received()
    await ca.clear()
    const r = raw()
    expect(((await r.send('KEYS', [`${prefix}cache:rbac-users:*`])) as string[]).length).toBe(0)
    expect(await r.exists(`${prefix}cache:rbac-roles:keep`)).toBe(true)
    expect(await until(() => b.caches.received() > seen)).toBe(true)
    expect(await cb.get('u7')).toBeUndefined()
    expect(st(ca).size).toBe(0)
  })
})

/** A TCP proxy in front of Redis that can be cut (connection refused) or made to swallow traffic (a hang). */
class Proxy {
  port = 0
  swallow = false
  /** Replies from Redis are kept back (counted in `heldBytes`) until `release()`. */
  holdReplies = false
  heldBytes = 0
  private held: (() => void)[] = []
  private listener: TCPSocketListener<{ up?: Socket; queue: Uint8Array[] }> | undefined
  private sockets = new Set<Socket<any>>()

  constructor(private readonly targetPort: number) {}

  get url() {
    return `redis://127.0.0.1:${this.port}`
  }

  start(): void {
    const sockets = this.sockets
    const self = this
    this.listener = Bun.listen<{ up?: Socket; queue: Uint8Array[] }>({
      hostname: '127.0.0.1',
      port: this.port,
      socket: {
        open: (client) => {
          client.data = { queue: [] }
          sockets.add(client)
          Bun.connect({
            hostname: '127.0.0.1',
            port: self.targetPort,
            socket: {
              open: (up) => {
                sockets.add(up)
                client.data.up = up
                for (const q of client.data.queue) up.write(q)
                client.data.queue = []
              },
              data: (_up, d) => {
                if (self.swallow) return
                if (!self.holdReplies) return void client.write(d)
                const copy = new Uint8Array(d)
                self.heldBytes += copy.length
                self.held.push(() => void client.write(copy))
              },
              close: () => void client.end(),
              error: () => void client.end(),
            },
          }).catch(() => client.end())
        },
        data: (client, d) => {
          if (self.swallow) return
          if (client.data.up) client.data.up.write(d)
          else client.data.queue.push(new Uint8Array(d))
        },
        close: (client) => void client.data.up?.end(),
        error: (client) => void client.data.up?.end(),
      },
    })
    this.port = this.listener.port
  }

  release(): void {
    this.holdReplies = false
    for (const w of this.held.splice(0)) w()
  }

  stop(): void {
    this.listener?.stop(true)
    this.listener = undefined
    for (const s of this.sockets) s.end()
    this.sockets.clear()
  }

  close(): void {
    this.stop()
  }
}

describe('two-tier cache: a lookup racing a change', () => {
  test.skipIf(!url)('a Redis answer that arrives after another instance deleted the key is not kept locally (needs BULWARK_TEST_REDIS_URL)', async () => {
    const target = new URL(url!)
    const proxy = new Proxy(Number(target.port || 6379))
    proxy.start()
    opened.push(proxy)
    const a = await instance(url!)
    // B's commands go through the proxy (so their replies can be held), its subscription does not
    const clock = new FakeClock()
    const bRedis = new Redis(proxy.url, 2000)
    const b = redisCaches(bRedis, { url: url!, prefix, maxEntries: 100, ttlMs: 60_000, clock, logger, timeoutMs: 2000 })
    opened.push(bRedis, b)
    await b.ready
    const ca = a.caches<string, string>('sessions')
    const cb = b<string, string>('sessions')
    await cb.get('warm-up') // loads the script, so the lookup below is one EVALSHA
    await ca.set('race', 'old')
    proxy.holdReplies = true
    const lookup = cb.get('race')
    expect(await until(() => proxy.heldBytes > 0)).toBe(true) // Redis answered 'old'; B has not seen it yet
    const seen = b.received()
    await ca.delete('race')
    expect(await until(() => b.received() > seen)).toBe(true)
    proxy.release()
    expect(await lookup).toBeUndefined() // the caller reads the database instead
    expect(await cb.get('race')).toBeUndefined() // and nothing stale was kept in the local tier
    expect(st(cb).localHits).toBe(0)
  })
})

describe('two-tier cache when Redis goes away', () => {
  test.skipIf(!OwnRedis.available())('Redis stopped: get/set/delete resolve, health is degraded; restarted: sharing and invalidation work again, local tiers were dropped (needs redis-server)', async () => {
    const server = new OwnRedis()
    await server.start()
    opened.push({ close: () => void server.stop() })
    const clock = new FakeClock()
    const o = { clock, coolDownMs: 100, ttlMs: 600_000 }
    const a = await instance(server.url, o)
    const b = await instance(server.url, o)
    const ca = a.caches<string, string>('sessions')
    const cb = b.caches<string, string>('sessions')
    expect(await b.caches.check.run()).toMatchObject({ status: 'ok' })
    await ca.set('x', 'before')
    expect(await cb.get('x')).toBe('before')

    await server.stop()
    expect(await until(() => !b.caches.subscriber.subscribed)).toBe(true)
    // nothing throws; what the local tier holds still answers, the rest is a miss (the service reads the database)
    expect(await cb.get('x')).toBe('before')
    expect(await cb.get('y')).toBeUndefined()
    await ca.set('y', 'during')
    expect(await ca.get('y')).toBe('during')
    await ca.delete('x')
    expect(await ca.get('x')).toBeUndefined()
    for (let i = 0; i < 3; i++) expect(await cb.get(`z${i}`)).toBeUndefined()
    expect(b.caches.breaker.state).toBe('open')
    // a clear that cannot reach Redis: B stops believing Redis for that cache until the clear is replayed
    await cb.clear()
    expect(await cb.get('x')).toBeUndefined()
    expect(st(cb).errors).toBeGreaterThan(0)
    const health = await b.caches.check.run()
    expect(health.status).toBe('degraded')
    expect(health.detail).toContain('redis unreachable')
    expect(logs.filter((l) => l.msg.startsWith('shared cache: Redis is unreachable'))).not.toHaveLength(0)

    await cb.set('x', 'stale-local')
    await server.start()
    const ok = async (f: RedisCacheFactory) => {
      clock.advance(100) // past the breaker's cool-down
      return (await f.check.run()).status === 'ok'
    }
    expect(await until(() => ok(a.caches), 8000)).toBe(true)
    expect(await until(() => ok(b.caches), 8000)).toBe(true)
    expect(b.caches.subscriber.resubscriptions).toBe(1)
    // B dropped its local tier on resubscribing (invalidations may have been missed meanwhile)
    expect(await cb.get('x')).toBeUndefined()

    // sharing again
    await ca.set('k', 'after')
    expect(await cb.get('k')).toBe('after')
    expect(await cb.get('k')).toBe('after')
    // invalidation again, over the new subscription
    const seen = b.caches.received()
    await ca.delete('k')
    expect(await until(() => b.caches.received() > seen)).toBe(true)
    expect(await cb.get('k')).toBeUndefined()
  })

  for (const [how, subscriberCut] of [
    ['on resubscribing (its subscription was cut too)', true],
    ['at its next Redis success (only its command connection was cut)', false],
  ] as const) {
    test.skipIf(!OwnRedis.available())(`a delete made while only A is cut off is replayed when A is back, ${how}: the old Redis copy does not outlive it (needs redis-server)`, async () => {
      const server = new OwnRedis()
      await server.start()
      opened.push({ close: () => void server.stop() })
      const proxy = new Proxy(server.port)
      proxy.start()
      opened.push(proxy)
      const clock = new FakeClock()
      const aRedis = new Redis(proxy.url, 200)
      const a = redisCaches(aRedis, { url: subscriberCut ? proxy.url : server.url, prefix, maxEntries: 100, ttlMs: 60_000, clock, logger, timeoutMs: 200, coolDownMs: 100 })
      opened.push(aRedis, a)
      await a.ready
      const b = await instance(server.url)
      const ca = a<string, string>('sessions')
      const cb = b.caches<string, string>('sessions')
      await ca.set('s', 'live')
      expect(await cb.get('s')).toBe('live')

      proxy.stop() // A alone loses Redis: it revokes the session (the database says so), Redis still holds it
      await ca.delete('s')
      expect(await raw(server.url).exists(`${prefix}cache:sessions:s`)).toBe(true)
      expect(await ca.get('s')).toBeUndefined()

      proxy.start()
      clock.advance(100) // past the breaker's cool-down
      // A does not read the key from Redis while its delete is unreplayed
      expect(await ca.get('s')).toBeUndefined()
      if (!subscriberCut) await a.check.run() // any successful Redis call (here the readiness PING) replays
      expect(await until(async () => !(await raw(server.url).exists(`${prefix}cache:sessions:s`)))).toBe(true)
      expect(await until(async () => (await cb.get('s')) === undefined)).toBe(true)
      expect(logs.some((l) => l.msg === 'shared cache: deletes made while Redis was away were replayed')).toBe(true)
    })
  }

  test.skipIf(!OwnRedis.available())('more failed deletes than maxPending: the whole cache is cleared in Redis on recovery (needs redis-server)', async () => {
    const server = new OwnRedis()
    await server.start()
    opened.push({ close: () => void server.stop() })
    const proxy = new Proxy(server.port)
    proxy.start()
    opened.push(proxy)
    const clock = new FakeClock()
    const a = await instance(proxy.url, { clock, coolDownMs: 100, maxPending: 1 })
    const ca = a.caches<string, string>('lockouts')
    for (const k of ['k1', 'k2', 'k3']) await ca.set(k, k)
    await a.caches<string, string>('sessions').set('other', 'x')
    proxy.stop()
    await ca.delete('k1')
    await ca.delete('k2')
    proxy.start()
    clock.advance(100)
    await a.caches.check.run()
    const r = raw(server.url)
    expect(await until(async () => ((await r.send('KEYS', [`${prefix}cache:lockouts:*`])) as string[]).length === 0)).toBe(true)
    expect(await r.exists(`${prefix}cache:sessions:other`)).toBe(true)
  })

  test.skipIf(!OwnRedis.available())('readiness is degraded while only the invalidation subscription is down, ok once it is back (needs redis-server)', async () => {
    const server = new OwnRedis()
    await server.start()
    opened.push({ close: () => void server.stop() })
    const proxy = new Proxy(server.port)
    proxy.start()
    opened.push(proxy)
    const redis = new Redis(server.url, 200)
    const a = redisCaches(redis, { url: proxy.url, prefix, maxEntries: 100, ttlMs: 60_000, clock: new FakeClock(), logger, timeoutMs: 200 })
    opened.push(redis, a)
    await a.ready
    expect((await a.check.run()).status).toBe('ok')
    proxy.stop()
    expect(await until(async () => (await a.check.run()).status === 'degraded')).toBe(true)
    expect((await a.check.run()).detail).toContain('not subscribed to cache invalidations')
    proxy.start()
    expect(await until(async () => (await a.check.run()).status === 'ok', 5000)).toBe(true)
  })

  test.skipIf(!OwnRedis.available())('a Redis that hangs: the command times out, the breaker opens at once, later calls skip Redis (needs redis-server)', async () => {
    const server = new OwnRedis()
    await server.start()
    opened.push({ close: () => void server.stop() })
    const proxy = new Proxy(server.port)
    proxy.start()
    opened.push(proxy)
    const a = await instance(proxy.url)
    const ca = a.caches<string, string>('rbac-roles')
    await ca.set('r', 'v')
    await a.caches.clearLocal()
    proxy.swallow = true
    expect(await ca.get('r')).toBeUndefined()
    expect(a.caches.breaker.state).toBe('open')
    const errors = st(ca).errors
    expect(await ca.get('r')).toBeUndefined()
    expect(st(ca).errors).toBe(errors + 1)
    expect((await a.caches.check.run()).status).toBe('degraded')
  })
})
