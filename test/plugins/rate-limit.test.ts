import { describe, expect, test } from 'bun:test'
import { ConfigError, testConfig } from '../../src/config'
import { AppError } from '../../src/lib/errors'
import { blockDuration, MemoryStore } from '../../src/lib/rate-limit-store'
import { expectProblem, makeApp, type TestResponse } from '../helpers'
import { limitedApp } from './rate-limit-app'

const MIN = 60_000
const HOUR = 3_600_000

/** Sends `n` requests and returns the statuses. */
async function burst(n: number, send: (i: number) => Promise<TestResponse>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await send(i)).status)
  return out
}

describe('rate limit: headers', () => {
  test('a successful response carries RateLimit-Policy and RateLimit (draft-11 syntax) and the legacy trio', async () => {
    const { req } = await limitedApp()
    const res = await req('GET', '/v1/ping')
    expect(res.status).toBe(200)
    expect(res.headers.get('ratelimit-policy')).toBe('"ip";q=300;w=60')
    expect(res.headers.get('ratelimit')).toBe('"ip";r=299;t=60')
    expect(res.headers.get('ratelimit-limit')).toBe('300')
    expect(res.headers.get('ratelimit-remaining')).toBe('299')
    expect(res.headers.get('ratelimit-reset')).toBe('60')
  })

  test('t counts down with the clock', async () => {
    const { req, clock } = await limitedApp()
    await req('GET', '/v1/ping')
    clock.advance(25_000)
    expect((await req('GET', '/v1/ping')).headers.get('ratelimit')).toBe('"ip";r=298;t=35')
  })

  test('an error response from a limited route carries every applied policy', async () => {
    const { req } = await limitedApp()
    const res = await req('POST', '/v1/auth/login', { body: { email: 'a@example.com', password: 'x' } })
    expectProblem(res, 401, 'invalid_credentials')
    expect(res.headers.get('ratelimit-policy')).toBe('"ip";q=300;w=60, "login-ip";q=10;w=60, "login-account";q=20;w=60')
    expect(res.headers.get('ratelimit')).toBe('"ip";r=299;t=60, "login-ip";r=9;t=60, "login-account";r=19;t=60')
    // the legacy trio describes the tightest policy
    expect(res.headers.get('ratelimit-limit')).toBe('10')
  })

  test('a 429 is a rate_limited problem with Retry-After in seconds and r=0', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '2' })
    await req('GET', '/v1/ping')
    await req('GET', '/v1/ping')
    const res = await req('GET', '/v1/ping')
    expectProblem(res, 429, 'rate_limited')
    expect(res.headers.get('retry-after')).toBe('60')
    expect(res.headers.get('ratelimit-policy')).toBe('"ip";q=2;w=60')
    expect(res.headers.get('ratelimit')).toBe('"ip";r=0;t=60')
    expect(res.headers.get('x-request-id')).toBeTruthy()
  })

  test('health, metrics and docs are exempt and carry no rate-limit headers', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '1' })
    await req('GET', '/v1/ping')
    expect((await req('GET', '/v1/ping')).status).toBe(429)
    for (let i = 0; i < 3; i++) {
      const live = await req('GET', '/health/live')
      expect(live.status).toBe(200)
      expect(live.headers.get('ratelimit')).toBeNull()
      expect((await req('GET', '/docs/json')).status).toBe(200)
    }
  })
})

describe('rate limit: global layer', () => {
  test('anonymous callers are limited per IP; every request counts, unknown routes included', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '3' })
    expect(await burst(2, () => req('GET', '/v1/ping'))).toEqual([200, 200])
    expect((await req('GET', '/v1/nothing-here')).status).toBe(404)
    expect((await req('GET', '/v1/ping')).status).toBe(429)
    // another IP has its own counter
    expect((await req('GET', '/v1/ping', { ip: '198.51.100.1' })).status).toBe(200)
  })

  test('a blocked key is refused before any handler work', async () => {
    const { req, calls } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '2' })
    await burst(5, () => req('GET', '/v1/ping'))
    expect(calls.ping).toBe(2)
  })

  test('IPv6 clients are grouped by /64', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '2' })
    expect((await req('GET', '/v1/ping', { ip: '2001:db8:1:2::1' })).status).toBe(200)
    expect((await req('GET', '/v1/ping', { ip: '2001:db8:1:2:ffff:ffff:ffff:ffff' })).status).toBe(200)
    expect((await req('GET', '/v1/ping', { ip: '2001:db8:1:2:abcd::9' })).status).toBe(429)
    expect((await req('GET', '/v1/ping', { ip: '2001:db8:1:3::1' })).status).toBe(200)
  })

  test('X-Forwarded-For from an untrusted peer is ignored', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '2' })
    const spoof = (i: number) => req('GET', '/v1/ping', { ip: '198.51.100.7', headers: { 'x-forwarded-for': `192.0.2.${i}` } })
    expect(await burst(3, spoof)).toEqual([200, 200, 429])
  })

  test('behind a trusted proxy each forwarded client has its own counter', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '2', BULWARK_TRUST_PROXY: '10.0.0.1' })
    const via = (client: string) => req('GET', '/v1/ping', { ip: '10.0.0.1', headers: { 'x-forwarded-for': client } })
    expect(await burst(3, () => via('192.0.2.1'))).toEqual([200, 200, 429])
    expect((await via('192.0.2.2')).status).toBe(200)
  })

  test('allowlisted addresses are never limited', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '1', BULWARK_RATE_LIMIT_ALLOWLIST: '192.0.2.0/24' })
    expect(await burst(4, () => req('GET', '/v1/ping', { ip: '192.0.2.55' }))).toEqual([200, 200, 200, 200])
    expect(await burst(2, () => req('GET', '/v1/ping'))).toEqual([200, 429])
  })

  test('authenticated callers are limited per user by role level, replacing the IP limit', async () => {
    const env = { BULWARK_RATE_LIMIT_ANON: '1', BULWARK_RATE_LIMIT_USER: '2', BULWARK_RATE_LIMIT_MODERATOR: '3', BULWARK_RATE_LIMIT_ADMIN: '4' }
    const { req } = await limitedApp(env)
    const user = await burst(3, () => req('GET', '/v1/ping', { token: 'tok-user' }))
    expect(user).toEqual([200, 200, 429])
    const mod = await burst(4, () => req('GET', '/v1/ping', { token: 'tok-mod' }))
    expect(mod).toEqual([200, 200, 200, 429])
    const admin = await burst(5, () => req('GET', '/v1/ping', { token: 'tok-admin' }))
    expect(admin).toEqual([200, 200, 200, 200, 429])
    // same IP all along: the user limits did not touch the anonymous IP counter, and vice versa
    expect((await req('GET', '/v1/ping')).status).toBe(200)
    expect((await req('GET', '/v1/ping', { token: 'tok-user2' })).headers.get('ratelimit-policy')).toBe('"user";q=2;w=60')
    // a user keeps their own counter across IPs
    expect((await req('GET', '/v1/ping', { token: 'tok-user', ip: '198.51.100.99' })).status).toBe(429)
  })

  test('an unknown token is simply anonymous', async () => {
    const { req } = await limitedApp()
    expect((await req('GET', '/v1/ping', { token: 'nonsense' })).headers.get('ratelimit-policy')).toBe('"ip";q=300;w=60')
  })

  test('BULWARK_RATE_LIMIT=off disables every layer', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT: 'off', BULWARK_RATE_LIMIT_ANON: '1' })
    expect(await burst(3, () => req('GET', '/v1/ping'))).toEqual([200, 200, 200])
    expect((await req('GET', '/v1/ping')).headers.get('ratelimit')).toBeNull()
  })

  test('makeApp (default test config) is limited but not hindered', async () => {
    const t = await makeApp()
    const res = await t.req('GET', '/health/ready')
    expect(res.status).toBe(200)
    expect((await t.req('GET', '/v1/unknown')).headers.get('ratelimit-policy')).toBe('"ip";q=300;w=60')
    t.close()
  })
})

describe('rate limit: escalating penalties', () => {
  test('each block is longer: window ×1, ×4, ×16, capped', async () => {
    const { req, clock } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '1', BULWARK_RATE_LIMIT_PENALTY_MAX: '30m', BULWARK_RATE_LIMIT_PENALTY_DECAY: '2h' })
    const retryAfters: string[] = []
    for (let round = 0; round < 4; round++) {
      expect((await req('GET', '/v1/ping')).status).toBe(200)
      const refused = await req('GET', '/v1/ping')
      expect(refused.status).toBe(429)
      const after = Number(refused.headers.get('retry-after'))
      retryAfters.push(String(after))
      // still blocked one second before the end, free at the end
      clock.advance(after * 1000 - 1000)
      expect((await req('GET', '/v1/ping')).status).toBe(429)
      clock.advance(1000)
    }
    expect(retryAfters).toEqual(['60', '240', '960', '1800'])
  })

  test('refusals during a block do not extend it', async () => {
    const { req, clock } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '1' })
    await burst(2, () => req('GET', '/v1/ping'))
    clock.advance(30_000)
    const again = await req('GET', '/v1/ping')
    expect(again.headers.get('retry-after')).toBe('30')
    clock.advance(30_000)
    expect((await req('GET', '/v1/ping')).status).toBe(200)
  })

  test('the penalty level decays after a quiet period', async () => {
    const { req, clock } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '1' })
    await burst(2, () => req('GET', '/v1/ping'))
    clock.advance(MIN)
    const second = await burst(2, () => req('GET', '/v1/ping'))
    expect(second).toEqual([200, 429])
    clock.advance(4 * MIN) // block 2 (×4) ends
    clock.advance(HOUR - 1000) // almost quiet for the decay period: level kept
    await req('GET', '/v1/ping')
    expect((await req('GET', '/v1/ping')).headers.get('retry-after')).toBe('960')
    clock.advance(16 * MIN + HOUR) // block 3 ends, then a full quiet hour
    await req('GET', '/v1/ping')
    expect((await req('GET', '/v1/ping')).headers.get('retry-after')).toBe('60')
  })

  test('one rate_limited security event per block, not per refused request', async () => {
    const { req, clock, events } = await limitedApp({ BULWARK_RATE_LIMIT_ANON: '1' })
    await burst(10, () => req('GET', '/v1/ping'))
    const first = await events('rate_limited')
    expect(first.length).toBe(1)
    expect(first[0]!.details).toEqual({ policy: 'ip', route: '/v1/ping', level: 1, blockSeconds: 60 })
    expect(first[0]!.ip).toBe('203.0.113.10')
    clock.advance(MIN)
    await burst(10, () => req('GET', '/v1/ping'))
    const both = await events('rate_limited')
    expect(both.length).toBe(2)
    expect(both[0]!.details!.level).toBe(2)
  })

  test('blockDuration caps at the maximum', () => {
    expect(blockDuration(MIN, 1, HOUR)).toBe(MIN)
    expect(blockDuration(MIN, 3, HOUR)).toBe(16 * MIN)
    expect(blockDuration(MIN, 99, 24 * HOUR)).toBe(24 * HOUR)
  })
})

describe('rate limit: sensitive routes', () => {
  const login = (email: string, ip?: string) => ({ body: { email, password: 'wrong' }, ip })

  test('login: failed attempts count, 10/min per IP across many accounts', async () => {
    const { req, calls } = await limitedApp()
    const statuses = await burst(12, (i) => req('POST', '/v1/auth/login', login(`user${i}@example.com`)))
    expect(statuses).toEqual([...Array(10).fill(401), 429, 429])
    expect(calls.login).toBe(10)
    const refused = await req('POST', '/v1/auth/login', login('fresh@example.com'))
    expect(refused.headers.get('ratelimit-policy')).toContain('"login-ip";q=10;w=60')
  })

  test('login: 20/min per account from many IPs, email normalised', async () => {
    const { req, calls } = await limitedApp()
    const variants = ['victim@example.com', 'VICTIM@example.com', ' victim@Example.com ']
    const statuses = await burst(21, (i) => req('POST', '/v1/auth/login', login(variants[i % 3]!, `198.51.100.${i + 1}`)))
    expect(statuses.slice(0, 20).every((s) => s === 401)).toBe(true)
    expect(statuses[20]).toBe(429)
    expect(calls.login).toBe(20)
    const other = await req('POST', '/v1/auth/login', login('someone-else@example.com', '198.51.100.200'))
    expect(other.status).toBe(401)
  })

  test('the account key holds no email in the store', async () => {
    const { req, deps } = await limitedApp()
    await req('POST', '/v1/auth/login', login('private@example.com'))
    const store = deps.rateLimit.store as MemoryStore
    const keys = [...(store as unknown as { entries: Map<string, unknown> }).entries.keys()]
    expect(keys.some((k) => k.startsWith('login-account:'))).toBe(true)
    expect(keys.join(' ')).not.toContain('private')
  })

  const cases: { name: string; path: string; body?: (i: number) => unknown; limit: number; windowS: number; policy: string; token?: string }[] = [
    { name: 'register 5/hour per IP', path: '/v1/auth/register', body: (i) => ({ email: `r${i}@example.com` }), limit: 5, windowS: 3600, policy: 'register-ip' },
    { name: 'forgot 3/hour per IP', path: '/v1/auth/password/forgot', body: (i) => ({ email: `f${i}@example.com` }), limit: 3, windowS: 3600, policy: 'forgot-ip' },
    { name: 'mfa verify 5 per 5 minutes per mfaToken', path: '/v1/auth/mfa/verify', body: () => ({ mfaToken: 'token-abc', totp: '000000' }), limit: 5, windowS: 300, policy: 'mfa-token' },
    { name: 'passkey options 30/min per IP', path: '/v1/auth/passkey/options', limit: 30, windowS: 60, policy: 'passkey-ip' },
    { name: 'authz check per calling user', path: '/v1/authz/check', limit: 6000, windowS: 60, policy: 'authz-user', token: 'tok-admin' },
  ]
  for (const c of cases) {
    test(c.name, async () => {
      const env: Record<string, string> = { BULWARK_RATE_LIMIT_ADMIN: '100000' }
      const { req, calls } = await limitedApp(env)
      const send = (i: number) => req('POST', c.path, { body: c.body?.(i), token: c.token })
      const statuses = await burst(c.limit + 1, send)
      expect(statuses.slice(0, c.limit).every((s) => s === 200)).toBe(true)
      const last = await send(c.limit + 1)
      expectProblem(last, 429, 'rate_limited')
      expect(statuses[c.limit]).toBe(429)
      expect(last.headers.get('ratelimit-policy')).toContain(`"${c.policy}";q=${c.limit};w=${c.windowS}`)
      expect(Object.values(calls).reduce((a, b) => a + b, 0)).toBe(c.limit)
    })
  }

  test('forgot: 3/hour per email even from many IPs', async () => {
    const { req } = await limitedApp()
    const statuses = await burst(4, (i) => req('POST', '/v1/auth/password/forgot', { body: { email: 'x@example.com' }, ip: `198.51.100.${i + 1}` }))
    expect(statuses).toEqual([200, 200, 200, 429])
  })

  test('mfa verify: a new mfaToken has its own counter', async () => {
    const { req } = await limitedApp()
    await burst(6, () => req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: 'one', totp: '1' }, ip: '198.51.100.1' }))
    expect((await req('POST', '/v1/auth/mfa/verify', { body: { mfaToken: 'two', totp: '1' }, ip: '198.51.100.2' })).status).toBe(200)
  })

  test('route limits are tunable with BULWARK_RATE_LIMIT_ROUTES', async () => {
    const { req } = await limitedApp({ BULWARK_RATE_LIMIT_ROUTES: 'login-ip=2/30s' })
    const statuses = await burst(3, (i) => req('POST', '/v1/auth/login', login(`u${i}@example.com`)))
    expect(statuses).toEqual([401, 401, 429])
    expect(() => testConfig({ BULWARK_RATE_LIMIT_ROUTES: 'nope=1/1m' })).toThrow(ConfigError)
    expect(() => testConfig({ BULWARK_RATE_LIMIT_ROUTES: 'login-ip=ten' })).toThrow(ConfigError)
  })

  test('enforce() lets a service limit per account (mfa-account 5 per 5 minutes)', async () => {
    const { deps, clock } = await limitedApp()
    for (let i = 0; i < 5; i++) await deps.rateLimit.enforce('mfa-account', 'user-1')
    const err = await deps.rateLimit.enforce('mfa-account', 'user-1').catch((e) => e)
    expect(err).toBeInstanceOf(AppError)
    expect(err.status).toBe(429)
    expect(err.extra.headers['retry-after']).toBe('300')
    await deps.rateLimit.enforce('mfa-account', 'user-2')
    clock.advance(5 * MIN)
    await deps.rateLimit.enforce('mfa-account', 'user-1')
  })
})

describe('in-memory store', () => {
  test('is bounded', async () => {
    const s = new MemoryStore({ maxMs: HOUR, decayMs: HOUR }, 100)
    for (let i = 0; i < 1000; i++) await s.hit(`k${i}`, 5, MIN, 0)
    expect(s.size).toBe(100)
  })

  test('drops the least recently used key first', async () => {
    const s = new MemoryStore({ maxMs: HOUR, decayMs: HOUR }, 3)
    for (const k of ['a', 'b', 'c', 'a', 'd']) await s.hit(k, 5, MIN, 0)
    expect(s.size).toBe(3)
    // `a` was used after `b`, so `b` went: `a` is on its third request, `b` starts again.
    expect((await s.hit('a', 5, MIN, 0)).remaining).toBe(2)
    expect((await s.hit('b', 5, MIN, 0)).remaining).toBe(4)
  })
})
