/**
 * InvalidationRelay.published(): what the server awaits before answering a request that emitted an
 * invalidation, so the event leaves for the other instances ahead of the answer (test/binary/multi-host.test.ts
 * shows the effect across two hosts). Here: it settles once Redis has answered the PUBLISH, the subscriber
 * has the event by then, it is undefined when nothing is on its way, and it settles (never rejects) when
 * Redis is away.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { RedisClient } from 'bun'
import { Invalidation, type InvalidationEvent } from '../../src/lib/invalidation'
import { InvalidationRelay } from '../../src/lib/invalidation-relay'
import { createLogger } from '../../src/lib/logger'
import { freePort } from '../support/own-redis'

const url = process.env.BULWARK_TEST_REDIS_URL
const logger = createLogger('silent')
let relays: InvalidationRelay[] = []
afterEach(() => {
  for (const r of relays) r.close()
  relays = []
})

describe('InvalidationRelay.published()', () => {
  test.skipIf(!url)('settles once Redis has taken every event published so far; undefined when none is on its way (needs BULWARK_TEST_REDIS_URL)', async () => {
    const prefix = `bwtest-${crypto.randomUUID()}:`
    const bus = new Invalidation()
    const relay = new InvalidationRelay(bus, url!, prefix, logger)
    relays.push(relay)
    await relay.start()
    expect(relay.published()).toBeUndefined()

    // A listener on the channel, as another instance would be.
    const seen: string[] = []
    const sub = new RedisClient(url!)
    await sub.subscribe(`${prefix}invalidation`, (m: string) => seen.push((JSON.parse(m) as InvalidationEvent).id))
    try {
      bus.emit({ kind: 'session', id: 's1' })
      bus.emit({ kind: 'user', id: 'u1' })
      const p = relay.published()
      expect(p).toBeInstanceOf(Promise)
      await p
      expect(relay.published()).toBeUndefined()
      // Redis queued both to the subscriber before answering the PUBLISH; they arrive in order.
      const end = Date.now() + 2000
      while (seen.length < 2 && Date.now() < end) await Bun.sleep(5)
      expect(seen).toEqual(['s1', 'u1'])
    } finally {
      sub.close()
    }
  })

  test('settles without an error when Redis does not answer', async () => {
    const bus = new Invalidation()
    const relay = new InvalidationRelay(bus, `redis://127.0.0.1:${freePort()}`, 'bwtest-down:', logger, { timeoutMs: 100 })
    relays.push(relay)
    await relay.start()
    bus.emit({ kind: 'session', id: 's1' })
    const p = relay.published()
    expect(p).toBeInstanceOf(Promise)
    await p
    expect(relay.published()).toBeUndefined()
  })
})
