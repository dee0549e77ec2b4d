/**
 * The black-box harness: builds `dist/bulwark` once per test run with the same command users get from
 * `bun run build`, starts it in an empty folder on a free port, and talks to it over real sockets.
 * Nothing here imports the sources: what is tested is what ships.
 */
import type { Subprocess } from 'bun'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const ROOT = join(import.meta.dir, '..', '..')
export const BINARY = join(ROOT, 'dist', 'bulwark')
export const OWNER_EMAIL = 'owner@example.com'
export const OWNER_PASSWORD = 'owner passphrase for binary 1'

let built: Promise<string> | undefined

/**
 * The binary suite on PostgreSQL: with BULWARK_TEST_BINARY_DB=postgres (and BULWARK_TEST_PG_URL), every run folder
 * that does not name its own database gets a fresh PostgreSQL database (`bw_bin_<run>_<n>`, created here with
 * Bun's client, not the sources), passed as BULWARK_DATABASE_URL to the servers and commands run in that folder;
 * scripts/test-pg.sh runs test/pg-binary-files.txt so and drops the run's databases afterwards.
 */
export const BINARY_ON_PG = process.env.BULWARK_TEST_BINARY_DB === 'postgres' && !!process.env.BULWARK_TEST_PG_URL
const RUN = process.env.BULWARK_TEST_BINARY_RUN ?? crypto.randomUUID().replaceAll('-', '').slice(0, 8)
const folderDbs = new Map<string, string>()
let made = 0

/** The PostgreSQL database of a run folder in a PostgreSQL run of the suite; undefined on SQLite. */
export const databaseUrlOf = (workdir: string): string | undefined => folderDbs.get(workdir)

async function databaseFor(workdir: string, env: Record<string, string> | undefined): Promise<Record<string, string>> {
  if (!BINARY_ON_PG || env?.BULWARK_DATABASE_URL !== undefined || env?.BULWARK_DB_PATH !== undefined) return {}
  let url = folderDbs.get(workdir)
  if (!url) {
    const name = `bw_bin_${RUN}_${++made}`
    const admin = new Bun.SQL(process.env.BULWARK_TEST_PG_URL!, { max: 1 })
    try {
      await admin.unsafe(`CREATE DATABASE "${name}"`)
    } finally {
      await admin.close()
    }
    const u = new URL(process.env.BULWARK_TEST_PG_URL!)
    u.pathname = `/${name}`
    url = u.toString()
    folderDbs.set(workdir, url)
  }
  return { BULWARK_DATABASE_URL: url }
}

/** Builds dist/bulwark with the package's own build script, once per process. */
export function ensureBinary(): Promise<string> {
  built ??= (async () => {
    const p = Bun.spawn(['bun', 'run', 'build'], { cwd: ROOT, stdout: 'pipe', stderr: 'pipe' })
    const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()])
    if (code !== 0) throw new Error(`bun run build failed (${code}): ${err}`)
    return BINARY
  })()
  return built
}

export interface Running {
  base: string
  port: number
  workdir: string
  proc: Subprocess<'pipe', 'pipe', 'pipe'>
  /** Everything the process wrote to stdout so far (JSON log lines and the start banner). */
  stdout(): string
  stderr(): string
  stop(signal?: NodeJS.Signals): Promise<number>
}

export interface StartOptions {
  env?: Record<string, string>
  args?: string[]
  /** Reuse a folder (restart on the same data); default: a new empty one. */
  workdir?: string
  /** Keep the folder after stop (default: removed unless `workdir` was given). */
  keep?: boolean
}

async function drain(stream: ReadableStream<Uint8Array>, onText: (t: string) => void) {
  const reader = stream.getReader()
  const decoder = new TextDecoder()
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    onText(decoder.decode(value, { stream: true }))
  }
}

/** Starts the compiled binary on a free port and waits for its "listening" log line. */
export async function startBinary(opts: StartOptions = {}): Promise<Running> {
  const binary = await ensureBinary()
  const workdir = opts.workdir ?? mkdtempSync(join(tmpdir(), 'bw-bin-'))
  const db = await databaseFor(workdir, opts.env)
  const proc = Bun.spawn([binary, ...(opts.args ?? ['serve'])], {
    cwd: workdir,
    env: {
      PATH: process.env.PATH ?? '',
      BULWARK_PORT: '0',
      BULWARK_LOG_LEVEL: 'info',
      BULWARK_ADMIN_EMAIL: OWNER_EMAIL,
      BULWARK_ADMIN_PASSWORD: OWNER_PASSWORD,
      ...db,
      ...opts.env,
    },
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  let out = ''
  let err = ''
  void drain(proc.stderr, (t) => (err += t))
  const listening = new Promise<string>((resolve, reject) => {
    void (async () => {
      await drain(proc.stdout, (t) => {
        out += t
        const m = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"bulwark listening"/.exec(out)
        if (m) resolve(m[1]!)
      })
      reject(new Error(`binary exited before listening (code ${proc.exitCode}): ${out}\n${err}`))
    })()
  })
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`binary did not start in 15 s: ${out}\n${err}`)), 15_000))
  const base = await Promise.race([listening, timeout])
  return {
    base,
    port: Number(new URL(base).port),
    workdir,
    proc,
    stdout: () => out,
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null) proc.kill(signal)
      const code = await proc.exited
      if (!opts.workdir && !opts.keep) rmSync(workdir, { recursive: true, force: true })
      return code
    },
  }
}

/** Runs the binary as a one-shot command (no server) in a folder; returns its exit code and output. */
export async function runBinary(args: string[], opts: { env?: Record<string, string>; cwd?: string; stdin?: string } = {}) {
  const binary = await ensureBinary()
  const cwd = opts.cwd ?? mkdtempSync(join(tmpdir(), 'bw-cmd-'))
  // A command in a folder a server ran in reaches that server's database (PostgreSQL runs of the suite).
  const db = folderDbs.has(cwd) ? await databaseFor(cwd, opts.env) : {}
  const p = Bun.spawn([binary, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...db, ...opts.env },
    stdin: opts.stdin === undefined ? 'ignore' : new Blob([opts.stdin]),
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [code, stdout, stderr] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()])
  return { code, stdout, stderr, cwd }
}

/** Sends raw bytes on a fresh TCP connection and returns everything the server wrote before closing. */
export function rawHttp(port: number, request: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1')
    let data = ''
    const timer = setTimeout(() => {
      sock.destroy()
      resolve(data)
    }, timeoutMs)
    sock.on('connect', () => sock.write(request))
    sock.on('data', (d) => {
      data += d.toString('latin1')
    })
    sock.on('end', () => {
      clearTimeout(timer)
      resolve(data)
    })
    sock.on('error', (e) => {
      clearTimeout(timer)
      if (data) resolve(data)
      else reject(e)
    })
  })
}

/** Status code of a raw HTTP response. */
export const statusOf = (raw: string) => Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1] ?? 0)

export interface Session {
  accessToken: string
  refreshToken: string
  userId: string
}

/** JSON over a real socket. */
export async function call(base: string, method: string, path: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  let body: string | undefined
  if (opts.body !== undefined) {
    headers['content-type'] ??= 'application/json'
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body)
  }
  const r = await fetch(`${base}${path}`, { method, headers, body, redirect: 'manual' })
  const text = await r.text()
  let json: unknown
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: r.status, headers: r.headers, text, json: json as any }
}

/** Registers (when needed) and signs in over the API; returns the bearer pair. */
export async function signIn(base: string, email: string, password: string, register = false): Promise<Session> {
  if (register) {
    const r = await call(base, 'POST', '/v1/auth/register', { body: { email, password } })
    if (r.status !== 201) throw new Error(`register ${email}: ${r.status} ${r.text}`)
  }
  const r = await call(base, 'POST', '/v1/auth/login', { body: { email, password } })
  if (r.status !== 200 || !r.json?.accessToken) throw new Error(`login ${email}: ${r.status} ${r.text}`)
  return { accessToken: r.json.accessToken, refreshToken: r.json.refreshToken, userId: r.json.user.id }
}

/** A raw HTTP response split into status, lower-cased headers and body (chunked bodies decoded). */
export function parseRaw(raw: string): { status: number; headers: Record<string, string>; body: string; json: any } {
  const split = raw.indexOf('\r\n\r\n')
  const head = split < 0 ? raw : raw.slice(0, split)
  let body = split < 0 ? '' : raw.slice(split + 4)
  const headers: Record<string, string> = {}
  for (const line of head.split('\r\n').slice(1)) {
    const i = line.indexOf(':')
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    let out = ''
    for (let rest = body; ; ) {
      const nl = rest.indexOf('\r\n')
      const size = Number.parseInt(rest.slice(0, nl), 16)
      if (!size) break
      out += rest.slice(nl + 2, nl + 2 + size)
      rest = rest.slice(nl + 2 + size + 2)
    }
    body = out
  }
  let json: unknown
  try {
    json = body ? JSON.parse(Buffer.from(body, 'latin1').toString('utf8')) : undefined
  } catch {}
  return { status: statusOf(raw), headers, body, json }
}
