import { describe, expect, test } from 'bun:test'
import { LruCache } from '../../src/lib/cache'
import { FakeClock } from '../../src/lib/clock'
import { Invalidation } from '../../src/lib/invalidation'

describe('LruCache', () => {
  test('counts hits and misses', async () => {
    const c = new LruCache<string, number>({ maxEntries: 10, ttlMs: 1000 })
    expect(c.get('a')).toBeUndefined()
    c.set('a', 1)
    expect(c.get('a')).toBe(1)
    expect(c.get('a')).toBe(1)
    expect(await c.stats()).toEqual({ hits: 2, misses: 1, size: 1, max: 10 })
    await c.delete('a')
    expect(c.get('a')).toBeUndefined()
    c.set('b', 2)
    await c.clear()
    expect(await c.stats().size).toBe(0)
  })

  test('is bounded: the least recently used entry goes first', async () => {
    const c = new LruCache<string, number>({ maxEntries: 10, ttlMs: 60_000 })
    for (let i = 0; i < 10; i++) c.set(`k${i}`, i)
    c.get('k0')
    c.set('k10', 10)
    expect(await c.stats().size).toBe(10)
    expect(c.get('k0')).toBe(0)
    expect(c.get('k1')).toBeUndefined()
  })

  test('entries expire after the TTL of the injected clock', () => {
    const clock = new FakeClock()
    const c = new LruCache<string, number>({ maxEntries: 10, ttlMs: 1000, clock })
    c.set('a', 1)
    clock.advance(999)
    expect(c.get('a')).toBe(1)
    clock.advance(2)
    expect(c.get('a')).toBeUndefined()
  })

  test("an entry's own lifetime, and what an entry has left (never more than the TTL)", () => {
    const clock = new FakeClock()
    const c = new LruCache<string, number>({ maxEntries: 10, ttlMs: 1000, clock })
    c.set('a', 1)
    c.set('short', 2, 300)
    c.set('none', 3, 0) // nothing left to live: not kept
    expect(c.get('none')).toBeUndefined()
    clock.advance(200)
    expect(c.remainingMs('a')).toBe(800)
    expect(c.remainingMs('short')).toBe(100)
    expect(c.remainingMs('missing')).toBe(0)
    clock.advance(101)
    expect(c.get('short')).toBeUndefined()
    expect(c.remainingMs('short')).toBe(0)
    expect(c.get('a')).toBe(1)
    expect(c.stats()).toMatchObject({ hits: 1, misses: 2 })
    // A lifetime of 0 or less drops what was there.
    c.set('a', 4, 0)
    expect(c.get('a')).toBeUndefined()
    // At the clock's 0 lru-cache reports an entry as never expiring; what is left is still at most the TTL.
    const z = new LruCache<string, number>({ maxEntries: 10, ttlMs: 1000, clock: new FakeClock(0) })
    z.set('a', 1)
    expect(z.remainingMs('a')).toBe(1000)
  })

  test('getIf: a value the caller cannot use counts as a miss', () => {
    const c = new LruCache<string, number>({ maxEntries: 10, ttlMs: 1000 })
    c.set('a', 1)
    expect(c.getIf('a', (v) => v === 2)).toBeUndefined()
    expect(c.getIf('a', (v) => v === 1)).toBe(1)
    expect(c.getIf('b', () => true)).toBeUndefined()
    expect(c.stats()).toMatchObject({ hits: 1, misses: 2 })
  })
})

describe('Invalidation', () => {
  test('delivers to every listener; unsubscribe stops delivery; a throwing listener is surfaced after the others ran', () => {
    const bus = new Invalidation()
    const seen: string[] = []
    const off = bus.on((e) => seen.push(`a:${e.kind}:${e.id}`))
    bus.on(() => {
      throw new Error('boom')
    })
    bus.on((e) => seen.push(`c:${e.id}`))
    expect(() => bus.emit({ kind: 'user', id: 'u1' })).toThrow('boom')
    expect(seen).toEqual(['a:user:u1', 'c:u1'])
    off()
    expect(() => bus.emit({ kind: 'role', id: 'r1' })).toThrow('boom')
    expect(seen).toEqual(['a:user:u1', 'c:u1', 'c:r1'])
  })
})
