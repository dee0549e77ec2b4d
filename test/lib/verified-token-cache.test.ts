import { describe, expect, test } from 'bun:test'
import { VerifiedTokenCache } from '../../src/lib/verified-token-cache'

const T0 = Date.UTC(2026, 0, 1) / 1000

describe('VerifiedTokenCache', () => {
  const make = (max?: number) => {
    let now = T0 * 1000
    const cache = new VerifiedTokenCache(() => now, max)
    return { cache, at: (s: number) => (now = s * 1000) }
  }

  test('answers only from iat (inclusive) to exp (exclusive), then forgets the entry', () => {
    const { cache, at } = make()
    cache.set('t', 'user', 'k1', { iat: T0 + 10, exp: T0 + 600 })
    at(T0 + 9)
    expect(cache.get('t')).toBeUndefined()
    at(T0 + 10)
    expect(cache.get('t')?.kid).toBe('k1')
    at(T0 + 599.999)
    expect(cache.get('t')).toBeDefined()
    at(T0 + 600)
    expect(cache.get('t')).toBeUndefined()
    expect(cache.size).toBe(0)
  })

  test('nbf moves the start; a token without exp is not cached', () => {
    const { cache, at } = make()
    cache.set('n', 'user', 'k1', { iat: T0, nbf: T0 + 30, exp: T0 + 600 })
    at(T0 + 29)
    expect(cache.get('n')).toBeUndefined()
    at(T0 + 30)
    expect(cache.get('n')).toBeDefined()
    cache.set('noexp', 'user', 'k1', { iat: T0 })
    expect(cache.peek('noexp')).toBeUndefined()
  })

  test('exact token strings only', () => {
    const { cache } = make()
    cache.set('abc.def.ghi', 'user', 'k1', { iat: T0, exp: T0 + 600 })
    expect(cache.get('abc.def.ghj')).toBeUndefined()
    expect(cache.get('abc.def.ghi ')).toBeUndefined()
    expect(cache.get('abc.def.ghi')).toBeDefined()
  })

  test('bounded: when full of live entries a new token is not cached; expired ones make room', () => {
    const { cache, at } = make(3)
    for (const t of ['a', 'b', 'c', 'd']) cache.set(t, 'user', 'k1', { iat: T0, exp: T0 + 600 })
    expect(cache.size).toBe(3)
    expect(cache.peek('a')).toBeDefined()
    expect(cache.peek('d')).toBeUndefined()
    expect(cache.refused).toBe(1)
    // Another token once the first three have expired: swept, then cached.
    at(T0 + 600)
    cache.set('e', 'user', 'k1', { iat: T0 + 600, exp: T0 + 1200 })
    expect(cache.size).toBe(1)
    expect(cache.get('e')).toBeDefined()
  })

  test('tokens used round-robin beyond the bound: a stable share keeps hitting', () => {
    const { cache } = make(100)
    const tokens = Array.from({ length: 150 }, (_, i) => `tok-${i}`)
    for (let round = 0; round < 3; round++) {
      for (const t of tokens) if (!cache.get(t)) cache.set(t, 'user', 'k1', { iat: T0, exp: T0 + 600 })
    }
    expect(cache.size).toBe(100)
    expect(cache.hits).toBe(200) // rounds 2 and 3: 100 hits each
  })

  test('retainKids drops the entries of every kid not listed, and only those', () => {
    const { cache } = make()
    cache.set('a', 'user', 'k1', { iat: T0, exp: T0 + 600 })
    cache.set('b', 'user', 'k2', { iat: T0, exp: T0 + 600 })
    cache.set('c', 'client', 'k2', { iat: T0, exp: T0 + 600 })
    cache.retainKids(['k1', 'k2'])
    expect(cache.size).toBe(3)
    cache.retainKids(['k1', 'k3'])
    expect(cache.size).toBe(1)
    expect(cache.get('a')).toBeDefined()
    expect(cache.get('b')).toBeUndefined()
    cache.dropKid('k1')
    expect(cache.size).toBe(0)
  })
})
