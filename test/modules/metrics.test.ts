import { afterEach, describe, expect, test } from 'bun:test'
import v8 from 'node:v8'
import { Metrics } from '../../src/lib/metrics'
import { expectProblem, grantRoleDirect, makeApp, type TestApp } from '../helpers'
import { parseProm, select, valueOf } from '../support/prom'

const scrape = async (a: TestApp) => parseProm((await a.req('GET', '/metrics')).text)

describe('metrics', () => {
  let a: TestApp
  afterEach(() => a?.close())

  test('Prometheus text with request and security-event counters, labelled by route pattern', async () => {
    a = await makeApp()
    await a.req('GET', '/health/live')
    await a.req('DELETE', '/v1/me/sessions/01a22220-617a-70db-b374-8c0965a6a6ab')
    await a.req('POST', '/v1/auth/login', { body: { email: 'nobody@example.com', password: 'whatever it is' } })
    const r = await a.req('GET', '/metrics')
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toContain('text/plain')
    expect(r.text).toContain('bulwark_http_requests_total{method="GET",route="/health/live",status="200"} 1')
    expect(r.text).toContain('route="/v1/me/sessions/:id"')
    expect(r.text).not.toContain('01a22220-617a')
    expect(r.text).toContain('bulwark_security_events_total{type="login_failed",outcome="failure"} 1')
  })

  test('cache hits and misses are counters (_total) that grow; the size is a gauge', async () => {
    a = await makeApp()
    const r = await a.req('POST', '/v1/auth/register', { body: { email: 'cache@example.com', password: 'correct horse battery staple 9' } })
    expect(r.status).toBe(201)
    const login = await a.req('POST', '/v1/auth/login', { body: { email: 'cache@example.com', password: 'correct horse battery staple 9' } })
    const token = login.body.accessToken as string
    const before = await scrape(a)
    await a.req('GET', '/v1/me', { token })
    await a.req('GET', '/v1/me', { token })
    const text = (await a.req('GET', '/metrics')).text
    const after = parseProm(text)
    expect(text).toContain('# TYPE bulwark_cache_hits_total counter')
    expect(text).toContain('# TYPE bulwark_cache_misses_total counter')
    expect(text).toContain('# TYPE bulwark_cache_entries gauge')
    expect(text).not.toContain('bulwark_cache_events')
    const sum = (s: ReturnType<typeof parseProm>, n: string) => select(s, n).reduce((x, y) => x + y.value, 0)
    expect(sum(after, 'bulwark_cache_hits_total') + sum(after, 'bulwark_cache_misses_total')).toBeGreaterThan(sum(before, 'bulwark_cache_hits_total') + sum(before, 'bulwark_cache_misses_total'))
    expect(valueOf(after, 'bulwark_cache_entries', { cache: 'effective' })).toBeGreaterThanOrEqual(1)
  })

  test('every in-process cache is on /metrics with its bound; entries never pass it', async () => {
    a = await makeApp({ BULWARK_CACHE_MAX_ENTRIES: '10', BULWARK_RATE_LIMIT: 'off' })
    const pw = 'correct horse battery staple 9'
    const ids: string[] = []
    for (let i = 0; i < 12; i++) {
      const reg = await a.req('POST', '/v1/auth/register', { body: { email: `bound${i}@example.com`, password: pw } })
      expect(reg.status).toBe(201)
      ids.push(reg.body.user.id as string)
    }
    // The first is a moderator: its users page shows the role ids of all twelve users (the held cache).
    await grantRoleDirect(a, ids[0]!, 'moderator')
    const tokens: string[] = []
    for (let i = 0; i < 12; i++) tokens.push((await a.req('POST', '/v1/auth/login', { body: { email: `bound${i}@example.com`, password: pw } })).body.accessToken as string)
    for (const token of tokens) expect((await a.req('GET', '/v1/me', { token })).status).toBe(200)
    expect((await a.req('GET', '/v1/users?limit=20', { token: tokens[0] })).status).toBe(200)
    const s = await scrape(a)
    const names = ['effective', 'roles', 'held', 'user_views', 'sessions', 'lockouts', 'clients', 'tokens']
    expect(select(s, 'bulwark_cache_max_entries').map((x) => x.labels.cache).sort()).toEqual([...names].sort())
    for (const cache of names.filter((n) => n !== 'tokens')) expect(valueOf(s, 'bulwark_cache_max_entries', { cache })).toBe(10)
    // Twelve users and twelve sessions went through caches bounded at ten.
    expect(valueOf(s, 'bulwark_cache_entries', { cache: 'sessions' })).toBe(10)
    expect(valueOf(s, 'bulwark_cache_entries', { cache: 'effective' })).toBe(10)
    expect(valueOf(s, 'bulwark_cache_entries', { cache: 'held' })).toBe(10)
    expect(valueOf(s, 'bulwark_cache_entries', { cache: 'user_views' })).toBe(10)
    expect(valueOf(s, 'bulwark_cache_entries', { cache: 'tokens' })).toBe(12)
    expect(valueOf(s, 'bulwark_cache_max_entries', { cache: 'tokens' })).toBe(20_000)
    expect(valueOf(s, 'bulwark_cache_hits_total', { cache: 'tokens' })! + valueOf(s, 'bulwark_cache_misses_total', { cache: 'tokens' })!).toBeGreaterThanOrEqual(12)
  })

  test('CORS preflights and CSRF refusals carry the route pattern, not "unmatched"', async () => {
    a = await makeApp({ BULWARK_CORS_ORIGINS: 'https://app.example.com' })
    const pre = await a.req('OPTIONS', '/v1/auth/login', { headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } })
    expect(pre.status).toBe(204)
    const pre2 = await a.req('OPTIONS', '/v1/me/sessions/01a22220-617a-70db-b374-8c0965a6a6ab', { headers: { origin: 'https://app.example.com', 'access-control-request-method': 'DELETE' } })
    expect(pre2.status).toBe(204)
    const refused = await a.req('POST', '/v1/auth/login', { body: { email: 'x@example.com', password: 'whatever it is' }, headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } })
    expectProblem(refused, 403, 'csrf_failed')
    await a.req('GET', '/no/such/route')
    const s = await scrape(a)
    expect(valueOf(s, 'bulwark_http_requests_total', { method: 'OPTIONS', route: '/v1/auth/login', status: '204' })).toBe(1)
    expect(valueOf(s, 'bulwark_http_requests_total', { method: 'OPTIONS', route: '/v1/me/sessions/:id', status: '204' })).toBe(1)
    expect(valueOf(s, 'bulwark_http_requests_total', { method: 'POST', route: '/v1/auth/login', status: '403' })).toBe(1)
    // A path no route serves stays unmatched (bounded cardinality).
    expect(valueOf(s, 'bulwark_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(1)
    expect(select(s, 'bulwark_http_requests_total').some((x) => x.labels.route?.includes('01a22220'))).toBe(false)
  })

  test('the request-latency histogram: buckets, count and sum move with requests; labels method and route only', async () => {
    a = await makeApp()
    const name = 'bulwark_http_request_duration_seconds'
    const labels = { method: 'GET', route: '/health/live' }
    for (let i = 0; i < 3; i++) await a.req('GET', '/health/live')
    const s1 = await scrape(a)
    const buckets = select(s1, `${name}_bucket`, labels)
    expect(buckets.map((b) => b.labels.le)).toEqual(['0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '+Inf'])
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value)
    expect(buckets.at(-1)!.value).toBe(3)
    expect(valueOf(s1, `${name}_count`, labels)).toBe(3)
    const sum1 = valueOf(s1, `${name}_sum`, labels)!
    expect(sum1).toBeGreaterThan(0)
    for (const b of select(s1, `${name}_bucket`)) expect(Object.keys(b.labels).sort()).toEqual(['le', 'method', 'route'])
    for (const c of select(s1, `${name}_count`)) expect(Object.keys(c.labels).sort()).toEqual(['method', 'route'])

    await a.req('GET', '/health/live')
    await a.req('GET', '/health/live')
    const s2 = await scrape(a)
    expect(valueOf(s2, `${name}_count`, labels)).toBe(5)
    expect(valueOf(s2, `${name}_bucket`, { ...labels, le: '+Inf' })).toBe(5)
    expect(valueOf(s2, `${name}_sum`, labels)!).toBeGreaterThan(sum1)
    // The scrape itself is observed under its own route.
    expect(valueOf(s2, `${name}_count`, { method: 'GET', route: '/metrics' })).toBe(1)
  })

  test('needs the metrics token when one is configured, compared in constant time', async () => {
    a = await makeApp({ BULWARK_METRICS_TOKEN: 'metrics-secret-token-1234' })
    expectProblem(await a.req('GET', '/metrics'), 401)
    expectProblem(await a.req('GET', '/metrics', { token: 'metrics-secret-token-1235' }), 401)
    expect((await a.req('GET', '/metrics', { token: 'metrics-secret-token-1234' })).status).toBe(200)
  })

  test('neither building the process metrics nor a scrape walks the heap (v8.getHeapSpaceStatistics)', async () => {
    // Bun's getHeapSpaceStatistics walks the whole JavaScript heap (45 ms a call with 300,000 objects), and its
    // per-space figures repeat bulwark_nodejs_heap_size_*: prom-client would call it at start and on every scrape.
    const real = v8.getHeapSpaceStatistics
    let walks = 0
    v8.getHeapSpaceStatistics = () => (walks++, real())
    try {
      const m = new Metrics({ defaultMetrics: true })
      const text = await m.registry.metrics()
      expect(walks).toBe(0)
      expect(text).toContain('bulwark_nodejs_heap_size_used_bytes')
      expect(text).toContain('bulwark_process_resident_memory_bytes')
      expect(text).not.toContain('heap_space')
    } finally {
      v8.getHeapSpaceStatistics = real
    }
    expect(v8.getHeapSpaceStatistics).toBe(real)
  })
})
