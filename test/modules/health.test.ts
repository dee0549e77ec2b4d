import { afterEach, describe, expect, test } from 'bun:test'
import { makeApp, type TestApp } from '../helpers'
import { sqlExec } from '../support/sql'

describe('health', () => {
  let a: TestApp
  afterEach(() => a?.close())

  test('live is 200', async () => {
    a = await makeApp()
    const r = await a.req('GET', '/health/live')
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ status: 'ok' })
  })

  test('ready reports the database with its latency', async () => {
    a = await makeApp()
    const r = await a.req('GET', '/health/ready')
    expect(r.status).toBe(200)
    expect(r.body.status).toBe('ok')
    expect(r.body.checks.database.status).toBe('ok')
    expect(typeof r.body.checks.database.latencyMs).toBe('number')
    expect(r.body.checks.cache.status).toBe('ok')
  })

  test('ready is 503 when the database cannot be read', async () => {
    a = await makeApp()
    await sqlExec(a.deps, 'DROP TABLE user_roles')
    await sqlExec(a.deps, 'DROP TABLE role_permissions')
    await sqlExec(a.deps, 'DROP TABLE roles', [], 'DROP TABLE roles CASCADE')
    const r = await a.req('GET', '/health/ready')
    expect(r.status).toBe(503)
    expect(r.body.checks.database.status).toBe('down')
  })

  test('an optional dependency that is down degrades but does not fail readiness', async () => {
    a = await makeApp()
    a.deps.health.add({ name: 'cache', required: false, run: () => ({ status: 'down' }) })
    const r = await a.req('GET', '/health/ready')
    expect(r.status).toBe(200)
    expect(r.body.status).toBe('degraded')
  })
})
