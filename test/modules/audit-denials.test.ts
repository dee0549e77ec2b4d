import { afterEach, describe, expect, test } from 'bun:test'
import { makeApp, signUp, STRONG_PASSWORD, type TestApp } from '../helpers'
import { makeAdminApp, seedUser } from '../support/admin'
import { sqlRows } from '../support/sql'

let t: TestApp | Awaited<ReturnType<typeof makeAdminApp>> | undefined
afterEach(() => t?.close())

interface EventRow {
  id: number
  type: string
  outcome: string
  actor_id: string | null
  ip: string | null
  request_id: string | null
  details: string | null
}

// details is JSON text on SQLite and jsonb on PostgreSQL: read as text on both.
const eventsOf = (a: TestApp, type: string) =>
  sqlRows<EventRow>(
    a.deps,
    'SELECT id, type, outcome, actor_id, ip, request_id, details FROM security_events WHERE type = ? ORDER BY id',
    [type],
    'SELECT id, type, outcome, actor_id, ip, request_id, details::text AS details FROM security_events WHERE type = $1 ORDER BY id',
  )
const allText = async (a: TestApp) => JSON.stringify(await sqlRows(a.deps, 'SELECT * FROM security_events'))

describe('refusals leave security events', () => {
  test('a 403 records access_denied with route, method, user, ip, reason and permission', async () => {
    const a = await makeAdminApp()
    t = a
    const plain = await seedUser(a.deps)
    const r = await a.as(plain, 'GET', '/v1/audit?limit=5', { ip: '198.51.100.20' })
    expect(r.status).toBe(403)
    const [e, ...more] = await eventsOf(a, 'access_denied')
    expect(more).toEqual([])
    expect(e).toMatchObject({ outcome: 'failure', actor_id: plain, ip: '198.51.100.20', request_id: r.headers.get('x-request-id') })
    expect(JSON.parse(e!.details!)).toEqual({ route: '/v1/audit', method: 'GET', status: 403, reason: 'missing_permission', permission: 'audit:read' })
  })

  test('a presented but invalid token records token_rejected with the reason, never the token; no token records nothing', async () => {
    const a = await makeApp()
    t = a
    const s = await signUp(a)
    await a.req('GET', '/v1/me')
    expect(await eventsOf(a, 'token_rejected')).toEqual([])

    const garbage = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'
    expect((await a.req('GET', '/v1/me', { token: garbage })).status).toBe(401)
    expect((await a.req('GET', '/v1/me', { headers: { authorization: 'Basic dXNlcjpwYXNz' } })).status).toBe(401)
    expect((await a.req('POST', '/v1/auth/logout', { token: s.accessToken })).status).toBe(204)
    expect((await a.req('GET', '/v1/me/sessions', { token: s.accessToken })).status).toBe(401)
    const events = await eventsOf(a, 'token_rejected')
    expect(events.map((e) => JSON.parse(e.details!))).toEqual([
      { route: '/v1/me', method: 'GET', status: 401, reason: 'invalid_token' },
      { route: '/v1/me', method: 'GET', status: 401, reason: 'malformed_authorization' },
      { route: '/v1/me/sessions', method: 'GET', status: 401, reason: 'session_ended' },
    ])
    expect(events.every((e) => e.actor_id === null && e.outcome === 'failure' && e.ip === '203.0.113.10')).toBe(true)
    const text = await allText(a)
    for (const secret of [garbage, 'dXNlcjpwYXNz', s.accessToken]) expect(text).not.toContain(secret)
  })

  test('a request-schema violation records request_rejected with where it failed, never the values', async () => {
    const a = await makeApp()
    t = a
    const r = await a.req('POST', '/v1/auth/login', { body: { email: 'someone@example.com', password: STRONG_PASSWORD, extra: 'hunter2-extra-value' } })
    expect(r.status).toBe(422)
    const [e, ...more] = await eventsOf(a, 'request_rejected')
    expect(more).toEqual([])
    expect(JSON.parse(e!.details!)).toEqual({ route: '/v1/auth/login', method: 'POST', status: 422, reason: 'validation_failed', location: 'body' })
    expect(e!.request_id).toBe(r.headers.get('x-request-id'))
    const text = await allText(a)
    expect(text).not.toContain(STRONG_PASSWORD)
    expect(text).not.toContain('hunter2-extra-value')
    expect(text).not.toContain('someone@example.com')
  })
})

describe('refusal events are bounded', () => {
  test('1,000 bad tokens from one address write the per-source bound; the excess is counted and summarised', async () => {
    const a = await makeApp({ BULWARK_RATE_LIMIT: 'off' })
    t = a
    for (let i = 0; i < 1000; i++) {
      const r = await a.req('GET', '/v1/me', { token: `bad.token.${i}` })
      expect(r.status).toBe(401)
    }
    expect((await eventsOf(a, 'token_rejected')).length).toBe(10)
    const metrics = await a.req('GET', '/metrics')
    expect(metrics.text).toContain('bulwark_security_events_suppressed_total{type="token_rejected"} 990')
    expect(await eventsOf(a, 'security_events_suppressed')).toEqual([])
    // Another address is a separate source.
    await a.req('GET', '/v1/me', { token: 'bad.token.x', ip: '198.51.100.99' })
    expect((await eventsOf(a, 'token_rejected')).length).toBe(11)

    a.clock.advance(60_000)
    await a.req('GET', '/v1/me', { token: 'bad.token.next' })
    expect((await eventsOf(a, 'token_rejected')).length).toBe(12)
    const [summary, ...more] = await eventsOf(a, 'security_events_suppressed')
    expect(more).toEqual([])
    const d = JSON.parse(summary!.details!)
    expect(d).toMatchObject({ suppressedType: 'token_rejected', suppressed: 990, topSources: [{ source: 'ip:203.0.113.10', suppressed: 990 }] })
    expect(Date.parse(d.to) - Date.parse(d.from)).toBe(60_000)
    expect((await a.deps.audit.verify()).intact).toBe(true)
  })

  test('a flood from many addresses stops at the per-type ceiling', async () => {
    const a = await makeApp({ BULWARK_RATE_LIMIT: 'off', BULWARK_AUDIT_DENIALS_PER_TYPE: '25' })
    t = a
    for (let i = 0; i < 100; i++) await a.req('GET', '/v1/me', { token: 'bad.token.z', ip: `198.51.100.${i}` })
    expect((await eventsOf(a, 'token_rejected')).length).toBe(25)
  })
})
