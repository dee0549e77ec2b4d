/**
 * The enabled webhook endpoints that `enqueue` keeps (src/modules/webhooks/service.ts ENDPOINTS_CACHE_MS): an
 * event nobody subscribes to costs no query, yet a change made here, or heard of through the invalidation
 * bus, applies to the very next event, and one made elsewhere unheard applies within the bound; an endpoint
 * gone or disabled elsewhere gets nothing and breaks nothing.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { makeApp, sharedDatabase, signUp, type TestApp } from '../helpers'
import { ENDPOINTS_CACHE_MS, WebhookService } from '../../src/modules/webhooks/service'
import { webhookDeliveries } from '../../src/db/tables'

let apps: TestApp[] = []
const drops: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const a of apps) await a.close()
  apps = []
  for (const drop of drops.splice(0)) await drop()
})

async function app(env: Record<string, string> = {}): Promise<TestApp> {
  const a = await makeApp({ BULWARK_WEBHOOK_ALLOW_PRIVATE: '1', ...env })
  a.clock.set(Date.now())
  apps.push(a)
  return a
}

const event = (type: string) => ({ type, timestamp: new Date().toISOString(), data: {} })
/** Another instance's webhook service on the same database, with no invalidation between them (no Redis). */
const elsewhere = (a: TestApp) => new WebhookService({ ...a.deps, audit: a.deps.audit })
const queued = async (a: TestApp) => (await a.deps.db.select({ id: webhookDeliveries.id }).from(webhookDeliveries)).length

describe('the cached enabled webhook endpoints', () => {
  test('an endpoint created or resubscribed on this instance gets the very next event', async () => {
    const a = await app()
    const w = a.deps.webhooks
    expect(await w.enqueue(event('session.created'))).toBe(0) // read: none, and kept
    const ep = await w.create(null, { url: 'http://127.0.0.1:9/x', events: ['user.created'] })
    expect(await w.enqueue(event('user.created'))).toBe(1)
    expect(await w.enqueue(event('session.created'))).toBe(0) // read again: one endpoint, not subscribed
    await w.update('admin', ep.id, { events: ['*'] })
    expect(await w.enqueue(event('session.created'))).toBe(1)
    await w.update('admin', ep.id, { enabled: false })
    expect(await w.enqueue(event('session.created'))).toBe(0) // read: none enabled, and kept
    await w.update('admin', ep.id, { enabled: true })
    expect(await w.enqueue(event('session.created'))).toBe(1)
    expect(await queued(a)).toBe(3)
  })

  test('a sign-in queues session.created for an endpoint created just before it', async () => {
    const a = await app()
    await signUp(a) // the sign-in's event read the endpoints (none) and kept them
    await a.deps.webhooks.create(null, { url: 'http://127.0.0.1:9/x', events: ['session.created'] })
    await signUp(a)
    expect(await queued(a)).toBe(1)
  })

  test('an endpoint created elsewhere, unheard of, gets events once the bound has passed; the invalidation bus makes it at once', async () => {
    const a = await app()
    const w = a.deps.webhooks
    expect(await w.enqueue(event('session.created'))).toBe(0)
    await elsewhere(a).create(null, { url: 'http://127.0.0.1:9/x', events: ['session.created'] })
    // What was read is used: the table is not read again for an event nobody wanted a moment ago.
    expect(await w.enqueue(event('session.created'))).toBe(0)
    a.clock.advance(ENDPOINTS_CACHE_MS - 1)
    expect(await w.enqueue(event('session.created'))).toBe(0)
    a.clock.advance(1)
    expect(await w.enqueue(event('session.created'))).toBe(1)

    // A second one, heard of: what the Redis relay re-emits from another instance.
    await elsewhere(a).create(null, { url: 'http://127.0.0.1:9/y', events: ['user.deleted'] })
    expect(await w.enqueue(event('user.deleted'))).toBe(0) // kept from the read just above
    a.deps.invalidation.emit({ kind: 'webhooks', id: '*' })
    expect(await w.enqueue(event('user.deleted'))).toBe(1)
  })

  test('an endpoint deleted or disabled elsewhere gets nothing from the cached list, and the event still succeeds', async () => {
    const a = await app()
    const w = a.deps.webhooks
    const other = elsewhere(a)
    const one = await w.create(null, { url: 'http://127.0.0.1:9/x', events: ['*'] })
    const two = await w.create(null, { url: 'http://127.0.0.1:9/y', events: ['*'] })
    expect(await w.enqueue(event('session.created'))).toBe(2) // both cached
    await other.remove(null as unknown as string, one.id)
    await other.update('admin', two.id, { enabled: false })
    // Both are still in this instance's list; the table is read again and nothing is queued (no foreign-key failure).
    expect(await w.enqueue(event('session.created'))).toBe(0)
    expect(await queued(a)).toBe(1) // the first event's delivery to `two`; `one`'s went with it
    const { accessToken } = await signUp(a)
    expect(accessToken).toBeString()
  })
})

describe('across instances', () => {
  const url = process.env.BULWARK_TEST_REDIS_URL
  test.skipIf(!url)('with Redis, an endpoint created on one instance gets the next sign-in on the other (needs BULWARK_TEST_REDIS_URL)', async () => {
    const { env, drop } = await sharedDatabase('bw-whcache-')
    drops.push(drop)
    const shared = { ...env, BULWARK_REDIS_URL: url!, BULWARK_REDIS_PREFIX: `bwtest-${crypto.randomUUID()}:` }
    const a = await app(shared)
    const b = await app(shared)
    await Promise.all([a.deps.relayReady, b.deps.relayReady])
    await signUp(b) // B read the endpoints (none) and keeps them
    await a.deps.webhooks.create(null, { url: 'http://127.0.0.1:9/x', events: ['session.created'] })
    // The creating request's answer waits for Redis to take the event (src/server.ts); in-process, wait for it.
    await a.deps.relay!.published()
    const end = Date.now() + 2000
    while (b.deps.relay!.received === 0 && Date.now() < end) await Bun.sleep(10)
    await signUp(b)
    expect(await queued(b)).toBe(1)
  })
})
