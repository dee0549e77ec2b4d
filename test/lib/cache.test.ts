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
