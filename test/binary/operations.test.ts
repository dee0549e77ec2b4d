/**
 * Operations behaviour of the shipped binary: /metrics under promtool, a log output that fails (stdout and
 * stderr on /dev/full), owner-only data files, the body-read deadline, and the management listener.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { closeSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { call, ensureBinary, OWNER_EMAIL, OWNER_PASSWORD, runBinary, startBinary, statusOf, type Running, BINARY_ON_PG } from './harness'
import { parseProm, valueOf } from '../support/prom'

const PROD_ENV = {
  BULWARK_ENV: 'production',
  BULWARK_SECRET: 'k3J9x!Qm2Lr8Vt5Pz1Wc7Yb4Nd6Hf0Gs-aE_uR-binary',
  BULWARK_PUBLIC_URL: 'http://localhost:3000',
  BULWARK_ALLOW_HTTP: '1',
  BULWARK_UPLOADS: '0',
}

/** A port that was free a moment ago (for a process whose log cannot be read to learn its port). */
async function freePort(): Promise<number> {
  const l = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = l.port
  l.stop(true)
  return port
}

const promtool = Bun.which('promtool')
/** Binary tests start processes on a shared 2-core machine: a generous per-test limit (nothing asserts time). */
const SLOW = 60_000

describe('binary operations', () => {
  let run: Running | undefined
  afterEach(async () => {
    await run?.stop()
    run = undefined
  }, SLOW)

  test.skipIf(!promtool)(`a /metrics scrape after real traffic passes \`promtool check metrics\`${promtool ? '' : ' (skipped: promtool is not installed; apt-get install prometheus)'}`, async () => {
    run = await startBinary({ env: { BULWARK_CORS_ORIGINS: 'https://app.example.com' } })
    await call(run.base, 'GET', '/health/live')
    await call(run.base, 'GET', '/health/ready')
    await call(run.base, 'GET', '/no/such/route')
    await call(run.base, 'POST', '/v1/auth/login', { body: { email: OWNER_EMAIL, password: 'a wrong password here' } })
    const ok = await call(run.base, 'POST', '/v1/auth/login', { body: { email: OWNER_EMAIL, password: OWNER_PASSWORD } })
    await call(run.base, 'GET', '/v1/me', { token: ok.json.accessToken })
    await call(run.base, 'OPTIONS', '/v1/auth/login', { headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } })
    const scrape = await call(run.base, 'GET', '/metrics')
    expect(scrape.status).toBe(200)
    expect(scrape.text).toContain('bulwark_http_request_duration_seconds_bucket')
    expect(scrape.text).toContain('bulwark_process_cpu_seconds_total')
    const p = Bun.spawn([promtool!, 'check', 'metrics'], { stdin: new Blob([scrape.text]), stdout: 'pipe', stderr: 'pipe' })
    const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()])
    expect(`${out}${err}`.trim()).toBe('')
    expect(code).toBe(0)
  }, SLOW)

  test('the compiled server\'s /metrics has the heap gauges but none that walks the heap on each scrape (heap_space)', async () => {
    run = await startBinary()
    const scrape = await call(run.base, 'GET', '/metrics')
    expect(scrape.status).toBe(200)
    expect(scrape.text).toContain('bulwark_nodejs_heap_size_used_bytes')
    expect(scrape.text).not.toContain('heap_space')
  }, SLOW)

  test('the compiled server\'s /metrics names every in-process cache with its bound, and a cache holds no more than its bound (BULWARK_CACHE_MAX_ENTRIES)', async () => {
    run = await startBinary({ env: { BULWARK_CACHE_MAX_ENTRIES: '10', BULWARK_RATE_LIMIT: 'off' } })
    // Twelve sessions of the owner, each token used once: twelve sessions looked up, twelve tokens verified.
    for (let i = 0; i < 12; i++) {
      const login = await call(run.base, 'POST', '/v1/auth/login', { body: { email: OWNER_EMAIL, password: OWNER_PASSWORD } })
      expect(login.status).toBe(200)
      expect((await call(run.base, 'GET', '/v1/me', { token: login.json.accessToken })).status).toBe(200)
    }
    const m = parseProm((await call(run.base, 'GET', '/metrics')).text)
    for (const cache of ['effective', 'roles', 'held', 'user_views', 'sessions', 'lockouts', 'clients']) expect(valueOf(m, 'bulwark_cache_max_entries', { cache })).toBe(10)
    expect(valueOf(m, 'bulwark_cache_max_entries', { cache: 'tokens' })).toBe(20_000)
    expect(valueOf(m, 'bulwark_cache_entries', { cache: 'sessions' })).toBe(10)
    expect(valueOf(m, 'bulwark_cache_entries', { cache: 'tokens' })).toBe(12)
    expect(valueOf(m, 'bulwark_cache_misses_total', { cache: 'sessions' })).toBeGreaterThanOrEqual(2)
  }, SLOW)

  test('with stdout and stderr on /dev/full (every write ENOSPC) the server starts, serves 250 requests without hanging, stays up, and counts the dropped lines', async () => {
    const binary = await ensureBinary()
    const workdir = mkdtempSync(join(tmpdir(), 'bw-full-'))
    const full = openSync('/dev/full', 'w')
    const port = await freePort()
    const proc = Bun.spawn([binary, 'serve'], {
      cwd: workdir,
      env: { PATH: process.env.PATH ?? '', BULWARK_PORT: String(port), BULWARK_LOG_LEVEL: 'info', BULWARK_RATE_LIMIT: 'off' },
      stdin: 'ignore',
      stdout: full,
      stderr: full,
    })
    closeSync(full)
    const base = `http://127.0.0.1:${port}`
    try {
      let up = false
      for (let i = 0; i < 150 && !up && proc.exitCode === null; i++) {
        up = await fetch(`${base}/health/live`).then((r) => r.status === 200, () => false)
        if (!up) await Bun.sleep(100)
      }
      expect(up).toBe(true)
      const statuses: number[] = []
      for (let i = 0; i < 250; i++) {
        const path = i % 3 === 0 ? '/health/live' : i % 3 === 1 ? '/no/such/route' : '/v1/auth/login'
        const init: RequestInit = { signal: AbortSignal.timeout(5000) }
        if (path === '/v1/auth/login') Object.assign(init, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email":"nobody@example.com","password":"not the password"}' })
        statuses.push((await fetch(`${base}${path}`, init)).status)
      }
      expect(statuses.filter((s) => s >= 500)).toEqual([])
      expect(statuses.length).toBe(250)
      expect(proc.exitCode).toBeNull()
      const metrics = parseProm(await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) })).text())
      expect(valueOf(metrics, 'bulwark_log_lines_dropped_total')).toBeGreaterThanOrEqual(250)
      expect((await fetch(`${base}/health/live`)).status).toBe(200)
      expect(proc.exitCode).toBeNull()
    } finally {
      proc.kill('SIGTERM')
      await proc.exited
      rmSync(workdir, { recursive: true, force: true })
    }
  }, SLOW)

  test.skipIf(BINARY_ON_PG)(`the data folder is created 0700 and the SQLite files and the secret 0600${BINARY_ON_PG ? ' (skipped: this run serves on PostgreSQL, there are no SQLite files)' : ''}`, async () => {
    run = await startBinary()
    await call(run.base, 'POST', '/v1/auth/login', { body: { email: OWNER_EMAIL, password: OWNER_PASSWORD } })
    const mode = (p: string) => (statSync(join(run!.workdir, p)).mode & 0o777).toString(8)
    expect(mode('data')).toBe('700')
    expect(mode('data/bulwark.sqlite')).toBe('600')
    expect(mode('data/bulwark.sqlite-wal')).toBe('600')
    expect(mode('data/bulwark.sqlite-shm')).toBe('600')
    expect(mode('data/secret.key')).toBe('600')
  }, SLOW)

  /** Sends headers and part of a body, then `trickle` bytes every 100 ms (none when 0); resolves when the server closes. */
  function slowBody(port: number, trickle: number, giveUpMs = 8000, path = '/v1/auth/login', chunked = false): Promise<{ raw: string; closedByServer: boolean }> {
    return new Promise((resolve) => {
      const sock = connect(port, '127.0.0.1')
      let raw = ''
      let timer: ReturnType<typeof setInterval> | undefined
      const giveUp = setTimeout(() => {
        clearInterval(timer)
        sock.destroy()
        resolve({ raw, closedByServer: false })
      }, giveUpMs)
      sock.on('connect', () => {
        // Content-Length (read whole by arrayBuffer) or chunked (read through the body stream, src/lib/read-body.ts).
        if (chunked) sock.write(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"em\r\n`)
        else sock.write(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"em`)
        if (trickle) timer = setInterval(() => sock.write(chunked ? `${trickle.toString(16)}\r\n${'a'.repeat(trickle)}\r\n` : 'a'.repeat(trickle)), 100)
      })
      sock.on('data', (d) => (raw += d.toString('latin1')))
      const done = () => {
        clearTimeout(giveUp)
        clearInterval(timer)
        resolve({ raw, closedByServer: true })
      }
      sock.on('end', done)
      sock.on('close', done)
      sock.on('error', () => {})
    })
  }

  test('a body that stops arriving, or trickles in, gets 408 within BULWARK_BODY_TIMEOUT and the socket is closed (with Content-Length, and chunked)', async () => {
    run = await startBinary({ env: { BULWARK_BODY_TIMEOUT: '500ms' } })
    for (const [trickle, chunked] of [[0, false], [1, false], [0, true], [1, true]] as const) {
      const { raw, closedByServer } = await slowBody(run.port, trickle, 8000, '/v1/auth/login', chunked)
      expect(statusOf(raw)).toBe(408)
      expect(raw).toContain('application/problem+json')
      expect(raw).toContain('"code":"request_timeout"')
      expect(raw.toLowerCase()).toContain('connection: close')
      expect(closedByServer).toBe(true)
    }
    // The server still serves.
    expect((await call(run.base, 'GET', '/health/live')).status).toBe(200)
  }, SLOW)

  test('a response sent without reading a trickling body (404) closes the socket instead of waiting for the rest', async () => {
    run = await startBinary({ env: { BULWARK_BODY_TIMEOUT: '30s' } })
    const { raw, closedByServer } = await slowBody(run.port, 1, 5000, '/no/such/route')
    expect(statusOf(raw)).toBe(404)
    expect(raw.toLowerCase()).toContain('connection: close')
    expect(closedByServer).toBe(true)
  }, SLOW)

  test('BULWARK_MANAGEMENT_PORT moves /metrics to a loopback management listener (health on both)', async () => {
    run = await startBinary({ env: { ...PROD_ENV, BULWARK_MANAGEMENT_PORT: '0' } })
    const m = /"managementUrl":"(http:\/\/[^"]+)"/.exec(run.stdout())
    expect(m?.[1]).toStartWith('http://127.0.0.1:')
    const mgmt = m![1]!
    expect((await call(run.base, 'GET', '/metrics')).status).toBe(404)
    const scrape = await call(mgmt, 'GET', '/metrics')
    expect(scrape.status).toBe(200)
    expect(scrape.text).toContain('bulwark_http_requests_total')
    expect((await call(mgmt, 'GET', '/health/live')).status).toBe(200)
    expect((await call(run.base, 'GET', '/health/live')).status).toBe(200)
    // Only metrics and health there.
    expect((await call(mgmt, 'POST', '/v1/auth/login', { body: { email: OWNER_EMAIL, password: OWNER_PASSWORD } })).status).toBe(404)
  }, SLOW)

  test('production refuses to start with /metrics public on the main listener, unless a token, a management port or BULWARK_METRICS_PUBLIC=1', async () => {
    const refused = await runBinary(['serve'], { env: { ...PROD_ENV, BULWARK_PORT: '0' } })
    expect(refused.code).toBe(2)
    expect(refused.stderr + refused.stdout).toContain('/metrics would be public')
    rmSync(refused.cwd, { recursive: true, force: true })

    run = await startBinary({ env: { ...PROD_ENV, BULWARK_METRICS_PUBLIC: '1' } })
    expect((await call(run.base, 'GET', '/metrics')).status).toBe(200)
    await run.stop()

    run = await startBinary({ env: { ...PROD_ENV, BULWARK_METRICS_TOKEN: 'metrics-token-0123456789abcdef' } })
    expect((await call(run.base, 'GET', '/metrics')).status).toBe(401)
    expect((await call(run.base, 'GET', '/metrics', { token: 'metrics-token-0123456789abcdef' })).status).toBe(200)
  }, SLOW)
})
