import { afterEach, describe, expect, test } from 'bun:test'
import { Elysia, t } from 'elysia'
import { testConfig } from '../../src/config'
import { buildDeps, createHandler } from '../../src/app'
import { FakeClock } from '../../src/lib/clock'
import { createLogger } from '../../src/lib/logger'
import { AppError } from '../../src/lib/errors'
import { bodyParser } from '../../src/plugins/body-parser'
import { errorHandler } from '../../src/plugins/error-handler'
import { requestContext } from '../../src/plugins/request-context'
import { Writable } from 'node:stream'
import { users } from '../../src/db/tables'
import { expectProblem, makeApp, type TestApp } from '../helpers'
import { testDatabaseEnv } from '../support/pg-apps'
import { sqlCount } from '../support/sql'

/** A small app with the real global plugins and a route that writes to the database. */
async function probeApp(env: Record<string, string> = {}) {
  const logs: string[] = []
  const sink = new Writable({ write: (c, _e, cb) => (logs.push(String(c)), cb()) })
  // BULWARK_TEST_DB=postgres: on a fresh PostgreSQL database, like makeApp().
  const db = await testDatabaseEnv(env)
  const deps = await buildDeps(testConfig(db.env), { clock: new FakeClock(), logger: createLogger('info', sink) })
  const app = new Elysia({ normalize: false })
    .use(requestContext([]))
    .use(errorHandler(deps.logger))
    .use(bodyParser({ json: deps.config.bodyLimit, upload: 4096, uploadPaths: (p) => p === '/upload' }))
    .post(
      '/write',
      async ({ body }) => {
        await deps.db.insert(users).values({ id: crypto.randomUUID(), email: body.email, name: body.name, createdAt: 1, updatedAt: 1 })
        return { ok: true }
      },
      { body: t.Object({ email: t.String({ format: 'email', maxLength: 254 }), name: t.String({ maxLength: 10 }) }, { additionalProperties: false }) },
    )
    .get('/boom', () => {
      throw new Error('secret detail /etc/passwd SELECT * FROM users')
    })
    .get('/leaky', () => ({ ok: true, passwordHash: 'x' }) as { ok: boolean }, { response: t.Object({ ok: t.Boolean() }) })
    .get('/teapot', () => {
      throw new AppError(409, 'conflict', 'Already there.')
    })
    .post('/upload', () => 'ok')
  const handle = createHandler(app, deps)
  const count = () => sqlCount(deps, 'SELECT count(*) AS n FROM users')
  const close = async () => {
    await deps.close()
    await db.drop()
  }
  return { deps, logs, count, handle, close }
}

const post = (path: string, body: BodyInit | undefined, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  new Request(`http://localhost${path}`, { method: 'POST', headers, body })

async function read(res: Response) {
  const text = await res.text()
  return { status: res.status, headers: res.headers, text, body: text ? JSON.parse(text) : undefined }
}

describe('error handler and body parser', () => {
  let p: Awaited<ReturnType<typeof probeApp>>
  afterEach(() => p?.close())

  test('a good request writes', async () => {
    p = await probeApp()
    const r = await read(await p.handle(post('/write', JSON.stringify({ email: 'a@example.com', name: 'A' }))))
    expect(r.status).toBe(200)
    expect(await p.count()).toBe(1)
  })

  test('validation errors name fields but never echo values, and write nothing', async () => {
    p = await probeApp()
    const r = await read(await p.handle(post('/write', JSON.stringify({ email: 'hunter2-not-an-email', name: 'x'.repeat(50) }))))
    const prob = expectProblem(r, 422, 'validation_failed')
    expect(prob.errors.map((e: { path: string }) => e.path).sort()).toEqual(['/email', '/name'])
    expect(r.text).not.toContain('hunter2')
    expect(r.text).not.toContain('xxxxxxxxxx')
    expect(await p.count()).toBe(0)
  })

  test('unknown fields are refused, not trimmed (mass assignment)', async () => {
    p = await probeApp()
    const r = await read(await p.handle(post('/write', JSON.stringify({ email: 'a@example.com', name: 'A', roles: ['owner'] }))))
    const prob = expectProblem(r, 422, 'validation_failed')
    expect(prob.errors[0].path).toBe('/roles')
    expect(await p.count()).toBe(0)
  })

  test.each([
    ['malformed JSON', '{"email":', 400, 'malformed_json'],
    ['deep nesting', '['.repeat(40) + ']'.repeat(40), 400, 'malformed_json'],
    ['__proto__ key', '{"__proto__":{"admin":true},"email":"a@example.com","name":"A"}', 400, 'malformed_json'],
    ['constructor key', '{"a":{"constructor":{}}}', 400, 'malformed_json'],
  ])('%s → %i', async (_name, body, status, code) => {
    p = await probeApp()
    const r = await read(await p.handle(post('/write', body as string)))
    expectProblem(r, status as number, code as string)
    expect(await p.count()).toBe(0)
  })

  test('invalid UTF-8 → 400', async () => {
    p = await probeApp()
    const bytes = new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])
    expectProblem(await read(await p.handle(post('/write', bytes))), 400, 'malformed_json')
  })

  test('wrong content type → 415', async () => {
    p = await probeApp()
    expectProblem(await read(await p.handle(post('/write', 'email=a', { 'content-type': 'application/x-www-form-urlencoded' }))), 415, 'unsupported_media_type')
    expectProblem(await read(await p.handle(post('/write', 'hi', { 'content-type': 'text/plain' }))), 415, 'unsupported_media_type')
    expect(await p.count()).toBe(0)
  })

  test('Content-Encoding the server does not accept → 415', async () => {
    p = await probeApp()
    const r = await read(await p.handle(post('/write', Bun.gzipSync(JSON.stringify({ email: 'a@example.com', name: 'A' })), { 'content-type': 'application/json', 'content-encoding': 'gzip' })))
    expectProblem(r, 415, 'unsupported_media_type')
  })

  test('oversized bodies → 413, by declared length and by actual length', async () => {
    p = await probeApp({ BULWARK_BODY_LIMIT: '2048' })
    const big = JSON.stringify({ email: 'a@example.com', name: 'x'.repeat(5000) })
    expectProblem(await read(await p.handle(post('/write', big))), 413, 'payload_too_large')
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(big))
        c.close()
      },
    })
    expectProblem(await read(await p.handle(post('/write', stream))), 413, 'payload_too_large')
    expect(await p.count()).toBe(0)
  })

  test('unknown routes → 404 problem', async () => {
    p = await probeApp()
    const r = await read(await p.handle(new Request('http://localhost/nope')))
    expectProblem(r, 404, 'not_found')
  })

  test('unexpected errors → 500 with only the request id; the detail goes to the log', async () => {
    p = await probeApp()
    const r = await read(await p.handle(new Request('http://localhost/boom', { headers: { 'x-request-id': 'req-12345678' } })))
    const prob = expectProblem(r, 500, 'internal')
    expect(prob.requestId).toBe('req-12345678')
    expect(r.text).not.toContain('passwd')
    expect(r.text).not.toContain('SELECT')
    expect(r.text).not.toContain('at ')
    expect(p.logs.join('')).toContain('secret detail')
  })

  test('a response that fails its schema is a 500, never a leak', async () => {
    p = await probeApp()
    const r = await read(await p.handle(new Request('http://localhost/leaky')))
    expectProblem(r, 500, 'internal')
    expect(r.text).not.toContain('passwordHash')
  })

  test('AppError maps to its status and code', async () => {
    p = await probeApp()
    expectProblem(await read(await p.handle(new Request('http://localhost/teapot'))), 409, 'conflict')
  })

  test('X-Request-Id is echoed when well-formed and replaced when not', async () => {
    p = await probeApp()
    const good = await p.handle(new Request('http://localhost/nope', { headers: { 'x-request-id': 'abc-12345678' } }))
    expect(good.headers.get('x-request-id')).toBe('abc-12345678')
    const bad = await p.handle(new Request('http://localhost/nope', { headers: { 'x-request-id': 'evil" injected <script>' } }))
    expect(bad.headers.get('x-request-id')).not.toContain('evil')
    expect(bad.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
  })
})

describe('access log', () => {
  let a: TestApp
  afterEach(() => a?.close())

  test('one line per request with method, route, status, duration and request id; secrets redacted', async () => {
    a = await makeApp()
    await a.req('GET', '/health/live', { headers: { authorization: 'Bearer super-secret-token', cookie: 'sid=topsecret' } })
    const line = a.logs.find((l) => l.msg === 'request')!
    expect(line).toMatchObject({ method: 'GET', route: '/health/live', status: 200 })
    expect(typeof line.durationMs).toBe('number')
    expect(typeof line.requestId).toBe('string')
    expect(JSON.stringify(a.logs)).not.toContain('super-secret-token')
    expect(JSON.stringify(a.logs)).not.toContain('topsecret')
  })
})
