/**
 * A whole app with stub routes on the sensitive paths (their real controllers live elsewhere) and a
 * fake rateLimitIdentity (Bearer tok-user/tok-mod/tok-admin), for the rate-limit tests.
 */
import { afterEach } from 'bun:test'
import { t } from 'elysia'
import { Writable } from 'node:stream'
import { buildDeps, createApp, createHandler } from '../../src/app'
import { testConfig } from '../../src/config'
import { FakeClock } from '../../src/lib/clock'
import { AppError } from '../../src/lib/errors'
import { createLogger } from '../../src/lib/logger'
import type { RateLimitIdentity } from '../../src/modules/rate-limit/service'
import type { TestResponse } from '../helpers'
import { testDatabaseEnv } from '../support/pg-apps'

const IDENTITIES: Record<string, RateLimitIdentity> = {
  'tok-user': { userId: 'u-user', level: 10 },
  'tok-user2': { userId: 'u-user2', level: 10 },
  'tok-mod': { userId: 'u-mod', level: 50 },
  'tok-admin': { userId: 'u-admin', level: 90 },
}

/** Apps not closed by their test: closed (and their PostgreSQL database dropped) after each test. */
const open = new Set<() => Promise<void>>()
afterEach(async () => {
  for (const close of [...open]) await close()
})

/** The real app plus stub routes for the sensitive endpoints (their controllers live elsewhere). */
export async function limitedApp(env: Record<string, string> = {}, clock = new FakeClock()) {
  const sink = new Writable({ write: (_c, _e, cb) => cb() })
  const db = await testDatabaseEnv(env)
  const deps = await buildDeps(testConfig(db.env), { clock, logger: createLogger('silent', sink) })
  const close = async () => {
    if (!open.delete(close)) return
    await deps.close()
    await db.drop()
  }
  open.add(close)
  deps.rateLimitIdentity = (request) => {
    const m = /^Bearer (.+)$/.exec(request.headers.get('authorization') ?? '')
    return m ? IDENTITIES[m[1]!] : undefined
  }
  const calls: Record<string, number> = {}
  const count = (name: string) => {
    calls[name] = (calls[name] ?? 0) + 1
    return { ok: true }
  }
  const Email = t.Object({ email: t.String({ maxLength: 320 }), password: t.Optional(t.String({ maxLength: 200 })) }, { additionalProperties: false })
  const app = createApp(deps)
    .get('/v1/ping', () => count('ping'))
    .post(
      '/v1/auth/login',
      () => {
        count('login')
        throw new AppError(401, 'invalid_credentials', 'Wrong email or password.')
      },
      { body: Email },
    )
    .post('/v1/auth/register', () => count('register'), { body: Email })
    .post('/v1/auth/password/forgot', () => count('forgot'), { body: Email })
    .post('/v1/auth/mfa/verify', () => count('mfa'), { body: t.Object({ mfaToken: t.String({ maxLength: 200 }), totp: t.Optional(t.String({ maxLength: 10 })) }, { additionalProperties: false }) })
    .post('/v1/auth/passkey/options', () => count('passkey'))
    .post('/v1/authz/check', () => count('authz'))
  const handler = createHandler(app, deps)
  const req = async (method: string, path: string, o: { body?: unknown; ip?: string; token?: string; headers?: Record<string, string> } = {}): Promise<TestResponse> => {
    const headers: Record<string, string> = { ...o.headers }
    if (o.body !== undefined) headers['content-type'] = 'application/json'
    if (o.token) headers.authorization = `Bearer ${o.token}`
    const res = await handler(new Request(`http://localhost${path}`, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) }), o.ip ?? '203.0.113.10')
    const text = await res.text()
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined, text }
  }
  const events = (type: string) => deps.audit.list({ type, limit: 100 })
  return { deps, clock, calls, req, events, close }
}

