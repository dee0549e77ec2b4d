/**
 * The binary is what users run: build it, start it in an empty folder on a free port, and talk to it
 * over a real socket.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Subprocess } from 'bun'
import { ensureBinary } from './binary/harness'

let binary: string
let proc: Subprocess<'ignore', 'pipe', 'pipe'> | undefined
let base = ''
let workdir = ''

async function waitForListening(p: Subprocess<'ignore', 'pipe', 'pipe'>): Promise<string> {
  const reader = p.stdout.getReader()
  let buf = ''
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    const { value, done } = await reader.read()
    if (done) break
    buf += new TextDecoder().decode(value)
    const m = /"url":"(http:\/\/[^"]+)".*"msg":"bulwark listening"/.exec(buf)
    if (m) {
      reader.releaseLock()
      return m[1]!
    }
  }
  throw new Error(`binary did not start: ${buf}`)
}

beforeAll(async () => {
  // The same build users get (`bun run build`), shared with test/binary/.
  binary = await ensureBinary()
  workdir = mkdtempSync(join(tmpdir(), 'bw-run-'))
  proc = Bun.spawn([binary, 'serve'], {
    cwd: workdir,
    env: { PATH: process.env.PATH ?? '', BULWARK_PORT: '0', BULWARK_LOG_LEVEL: 'info', BULWARK_ADMIN_EMAIL: 'owner@example.com', BULWARK_ADMIN_PASSWORD: 'owner passphrase for smoke 1' },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  base = await waitForListening(proc)
}, 60_000)

afterAll(async () => {
  proc?.kill('SIGTERM')
  await proc?.exited
})

describe('compiled binary', () => {
  test('--version and config check work with nothing beside the binary', () => {
    const v = Bun.spawnSync([binary, '--version'], { cwd: workdir })
    expect(v.exitCode).toBe(0)
    expect(v.stdout.toString().trim()).toMatch(/^\d+\.\d+\.\d+/)
    const bad = Bun.spawnSync([binary, 'config', 'check'], { cwd: workdir, env: { BULWARK_ENV: 'production', BULWARK_CORS_ORIGINS: '*' } })
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr.toString()).toContain('wildcard')
  })

  test('health over a real socket, migrated database in the empty folder', async () => {
    const r = await fetch(`${base}/health/ready`)
    expect(r.status).toBe(200)
    const body = (await r.json()) as { checks: { database: { status: string } } }
    expect(body.checks.database.status).toBe('ok')
    expect(await Bun.file(join(workdir, 'data', 'bulwark.sqlite')).exists()).toBe(true)
  })

  test('docs and their assets load from the binary', async () => {
    const page = await fetch(`${base}/docs`)
    expect(page.status).toBe(200)
    const js = await fetch(`${base}/docs/assets/swagger-ui-bundle.js`)
    expect(js.status).toBe(200)
    expect((await js.text()).length).toBeGreaterThan(500_000)
    const css = await fetch(`${base}/docs/assets/swagger-ui.css`)
    expect(css.status).toBe(200)
    const spec = await fetch(`${base}/docs/json`)
    expect(((await spec.json()) as { openapi: string }).openapi).toMatch(/^3\./)
  })

  test('the first owner signs in and reads /v1/me; the token verifies against the JWKS', async () => {
    const login = await fetch(`${base}/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@example.com', password: 'owner passphrase for smoke 1' }),
    })
    expect(login.status).toBe(200)
    const { accessToken } = (await login.json()) as { accessToken: string }
    const me = await fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${accessToken}` } })
    expect(me.status).toBe(200)
    const body = (await me.json()) as { roles: string[] }
    expect(body.roles).toContain('owner')
    const jwks = (await (await fetch(`${base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }
    const kid = JSON.parse(Buffer.from(accessToken.split('.')[0]!, 'base64url').toString()).kid
    expect(jwks.keys.map((k) => k.kid)).toContain(kid)
  })

  test('unknown route is a 404 problem document', async () => {
    const r = await fetch(`${base}/definitely-not-here`)
    expect(r.status).toBe(404)
    expect(r.headers.get('content-type')).toContain('application/problem+json')
    expect(r.headers.get('x-request-id')).toBeTruthy()
  })

  test('a body over the limit gets a problem document, not a dropped connection', async () => {
    const r = await fetch(`${base}/health/live`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(2 * 1024 * 1024) })
    expect(r.status).toBe(413)
    expect(r.headers.get('content-type')).toContain('application/problem+json')
  })

  test('a second process on the same port fails instead of sharing it', async () => {
    const port = new URL(base).port
    const second = Bun.spawn([binary, 'serve'], { cwd: workdir, env: { BULWARK_PORT: port }, stdout: 'pipe', stderr: 'pipe' })
    const code = await second.exited
    expect(code).not.toBe(0)
  })

  test('SIGTERM drains and exits 0 with the database closed cleanly', async () => {
    // A request that is really in flight when the signal arrives: its headers are in (the handler runs and
    // waits for the body), the rest of the body is sent only after SIGTERM. A plain fetch started just
    // before the signal races the connect itself, which no drain can serve.
    const body = JSON.stringify({ email: 'drain@example.com' })
    const sock = connect(Number(new URL(base).port), '127.0.0.1')
    let raw = ''
    sock.on('data', (d) => (raw += d.toString('latin1')))
    const closed = new Promise<void>((r) => sock.on('close', () => r()))
    await new Promise<void>((r) => sock.on('connect', () => r()))
    sock.write(`POST /v1/auth/password/forgot HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body.slice(0, 5)}`)
    await Bun.sleep(200)
    proc!.kill('SIGTERM')
    await Bun.sleep(200)
    sock.write(body.slice(5))
    await closed
    expect(raw).toStartWith('HTTP/1.1 202')
    expect(await proc!.exited).toBe(0)
    const { Database } = await import('bun:sqlite')
    const db = new Database(join(workdir, 'data', 'bulwark.sqlite'))
    expect(db.query<{ n: number }, []>('SELECT count(*) AS n FROM users').get()!.n).toBe(1)
    await db.close()
  })
})
