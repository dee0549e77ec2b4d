import { afterEach, describe, expect, test } from 'bun:test'
import { expectProblem, makeApp, type TestApp } from '../helpers'

describe('metrics', () => {
  let a: TestApp
  afterEach(() => a?.close())

  test('Prometheus text with request and security-event counters, labelled by route pattern', async () => {
    a = makeApp()
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
    expect(r.text).toMatch(/bulwark_cache_events\{cache="effective",kind="misses"\} \d+/)
  })

  test('needs the metrics token when one is configured, compared in constant time', async () => {
    a = makeApp({ BULWARK_METRICS_TOKEN: 'metrics-secret-token-1234' })
    expectProblem(await a.req('GET', '/metrics'), 401)
    expectProblem(await a.req('GET', '/metrics', { token: 'metrics-secret-token-1235' }), 401)
    expect((await a.req('GET', '/metrics', { token: 'metrics-secret-token-1234' })).status).toBe(200)
  })
})
