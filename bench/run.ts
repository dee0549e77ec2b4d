#!/usr/bin/env bun
/**
 * `bun run bench`: builds the binary, seeds a database, runs the scenarios against the server pinned to
 * core 0 with wrk pinned to core 1, measures the baselines (a bare Elysia app doing the same JWT and database
 * work; the raw argon2id verification rate), prints one table and the targets (PASS/MISS), and writes
 * bench/results/<date>-<mode>.md. With `--db postgres` the server runs on a fresh PostgreSQL database made
 * for the run (and dropped after it), and the standard run measures every scenario on both engines, one
 * after the other on two servers started side by side. Not a test: nothing here asserts anything. See the
 * README "Performance".
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomToken } from '../src/lib/crypto'
import { parseArgs, type BenchArgs } from './lib/args'
import { describeMachine } from './lib/machine'
import { cpuMsOf, freePort, memoryOf, run, spawnPinned, threadCpuOf, waitReady, type Child } from './lib/proc'
import { plateauDrift } from './lib/drift'
import { atLeast, atMost, below, engineTable, resultsTable, saveResults, verdictTable, type Row, type Verdict } from './lib/report'
import { ADMINS, AUDIENCE, PASSWORD, PUBLIC_URL, apiEmail, seedThroughApi, TokenMinter, userEmail, type Seeded } from './lib/seed'
import { backendCpu, createBenchDatabase, dropBenchDatabase, PgStore, SqliteStore, type BenchStore, type Engine } from './lib/store'
import { ensureWrk, wrk, writeRequests, type Req } from './lib/wrk'
import { parseProm, select, valueOf } from '../test/support/prom'

const ROOT = join(import.meta.dir, '..')
const BIN = join(ROOT, 'dist', 'bulwark')
const BASELINE_BIN = join(ROOT, 'dist', 'bench-baseline')

const args = parseArgs(process.argv.slice(2))
const started = new Date()
const machine = describeMachine()
const children = new Set<Child>()
const work = mkdtempSync(join(tmpdir(), 'bulwark-bench-'))
const say = (s: string) => process.stdout.write(`${s}\n`)

/** PostgreSQL databases this run created (dropped at the end, and on Ctrl-C). */
const pgDatabases = new Set<string>()
async function dropDatabases(): Promise<void> {
  for (const url of pgDatabases) {
    try {
      await dropBenchDatabase(args.pgUrl, url)
      pgDatabases.delete(url)
    } catch (e) {
      process.stderr.write(`could not drop ${new URL(url).pathname.slice(1)}: ${(e as Error).message}\n`)
    }
  }
}

process.on('SIGINT', () => {
  for (const c of children) c.proc.kill('SIGKILL')
  void dropDatabases().finally(() => process.exit(130))
})

const ENGINE_NAME: Record<Engine, string> = { sqlite: 'SQLite', postgres: 'PostgreSQL' }

/** One database with its secret, seeded accounts, and the server environment that reads it. */
interface Ctx {
  engine: Engine
  dir: string
  store: BenchStore
  /** PostgreSQL: the run's database (BULWARK_DATABASE_URL of the server). */
  pgUrl?: string
  secret: string
  seeded: Seeded
  minter: TokenMinter
  env: Record<string, string>
  envName: string
  users: number
}

let serverEnvName: 'production' | 'development' = 'production'

function serverEnv(dir: string, secret: string, extra: Record<string, string> = {}, pgUrl?: string): Record<string, string> {
  return {
    ...(pgUrl ? { BULWARK_DATABASE_URL: pgUrl } : {}),
    BULWARK_ENV: serverEnvName,
    BULWARK_SECRET: secret,
    BULWARK_DATA_DIR: dir,
    BULWARK_DB_PATH: join(dir, 'bulwark.sqlite'),
    BULWARK_HOST: '127.0.0.1',
    BULWARK_PUBLIC_URL: PUBLIC_URL,
    BULWARK_JWT_AUDIENCE: AUDIENCE,
    BULWARK_ALLOW_HTTP: '1',
    BULWARK_UPLOADS_SCAN: 'off',
    BULWARK_HIBP: 'off',
    // Production refuses a public /metrics without a token; the bench machine is loopback-only.
    BULWARK_METRICS_PUBLIC: '1',
    BULWARK_LOG_LEVEL: args.logLevel,
    // Throughput scenarios run without rate limits; the 429 storm turns them back on.
    BULWARK_RATE_LIMIT: 'off',
    // The harness mints its access tokens for 4 h (bench/lib/seed.ts TokenMinter); the server refuses a
    // lifetime over its own, so it must allow as much (the default 10 m would answer 401 to every read).
    BULWARK_ACCESS_TOKEN_TTL: '4h',
    ...extra,
    // Experiments: BENCH_SERVER_ENV="K=V K2=V2" adds settings to every server the run starts (saved with the results' command line only if --note says so).
    ...Object.fromEntries((process.env.BENCH_SERVER_ENV ?? '').split(/\s+/).filter((kv) => kv.includes('=')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
  }
}

/** Starts the compiled server on `ctx`'s database; falls back from production to development if production refuses the bench settings. */
async function startServer(ctx: Pick<Ctx, 'dir' | 'secret' | 'pgUrl'>, extra: Record<string, string> = {}): Promise<Child> {
  const port = freePort()
  const child = spawnPinned([BIN, 'serve'], { ...serverEnv(ctx.dir, ctx.secret, extra, ctx.pgUrl), BULWARK_PORT: String(port) }, port, join(ctx.dir, 'server.log'))
  children.add(child)
  try {
    await waitReady(child)
    return child
  } catch (e) {
    children.delete(child)
    await child.stop()
    if (serverEnvName === 'production' && child.proc.exitCode === 2) {
      say(`! production refused the bench settings; running in development instead:\n${(e as Error).message}`)
      serverEnvName = 'development'
      return startServer(ctx, extra)
    }
    throw e
  }
}

async function stop(child: Child): Promise<void> {
  await child.stop()
  children.delete(child)
}

/**
 * A fresh database with `users` users: a handful through the API, the rest inserted directly. On PostgreSQL
 * the database is created first (empty) and migrated by the server's first start, like a new deployment.
 */
async function prepare(users: number, engine: Engine = 'sqlite'): Promise<Ctx> {
  const dir = mkdtempSync(join(work, `${engine}-`))
  const secret = randomToken(48)
  let pgUrl: string | undefined
  if (engine === 'postgres') {
    pgUrl = await createBenchDatabase(args.pgUrl)
    pgDatabases.add(pgUrl)
  }
  const where = pgUrl ? `PostgreSQL database ${new URL(pgUrl).pathname.slice(1)}` : dir
  say(`seeding ${users.toLocaleString('en-US')} users + ${ADMINS} admins in ${where}`)
  const t0 = performance.now()
  const seedServer = await startServer({ dir, secret, pgUrl })
  await seedThroughApi(seedServer.url)
  await stop(seedServer)
  const store: BenchStore = pgUrl ? new PgStore(pgUrl) : new SqliteStore(join(dir, 'bulwark.sqlite'))
  const seeded = await store.bulkSeed(users)
  const minter = await TokenMinter.load(store, secret)
  say(`  seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s (server env: ${serverEnvName})`)
  return { engine, dir, store, pgUrl, secret, seeded, minter, env: serverEnv(dir, secret, {}, pgUrl), envName: serverEnvName, users }
}

/** Closes the harness's connection and, on PostgreSQL, drops the run's database. */
async function release(ctx: Ctx): Promise<void> {
  await ctx.store.close()
  if (ctx.pgUrl) {
    await dropBenchDatabase(args.pgUrl, ctx.pgUrl)
    pgDatabases.delete(ctx.pgUrl)
  }
}

/** PostgreSQL: CPU of the run database's backends, summed over those alive at the end (ms), since `before`. */
async function dbCpuSince(ctx: Ctx, before: Map<number, number> | undefined): Promise<number | undefined> {
  if (!ctx.pgUrl || !before) return undefined
  const after = await backendCpu(args.pgUrl, new URL(ctx.pgUrl).pathname.slice(1))
  if (!after) return undefined
  let ms = 0
  for (const [pid, t] of after) ms += t - (before.get(pid) ?? 0)
  return ms
}

/** `count` ids spread evenly over the whole table (so large databases are read across, not at one end). */
function spread<T>(xs: T[], count: number): T[] {
  if (xs.length <= count) return xs
  const step = xs.length / count
  return Array.from({ length: count }, (_, i) => xs[Math.floor(i * step)]!)
}

let fileNo = 0
const reqFile = (ctx: Ctx, reqs: Req[]) => writeRequests(join(ctx.dir, `requests-${fileNo++}.txt`), reqs)

interface Scenario {
  name: string
  reqs: Req[]
  expect?: number[]
  once?: boolean
  timeoutS?: number
  seconds?: number
  /** Connections for this scenario (default --connections). */
  connections?: number
  /** Called between warm-up and measurement with the warm-up's rate (refresh tokens top-up). */
  measureReqs?: (warmRps: number) => Promise<Req[]>
}

/** Probes the route once (404 → "n/a (route missing)"), warms up, measures, and reads the server's RSS. */
async function measure(ctx: Ctx, child: Child, s: Scenario): Promise<Row> {
  const first = s.reqs[0]!
  const probe = await fetch(child.url + first.path, {
    method: first.method,
    headers: { ...(first.token ? { authorization: `Bearer ${first.token}` } : {}), ...(first.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: first.body === undefined ? undefined : JSON.stringify(first.body),
  })
  const probeText = await probe.text()
  const expect = s.expect ?? [200]
  if (probe.status === 404) return { scenario: s.name, note: 'n/a (route missing)' }
  if (!expect.includes(probe.status)) {
    const code = /"code"\s*:\s*"([^"]+)"/.exec(probeText)?.[1]
    return { scenario: s.name, note: `n/a (probe answered ${probe.status}${code ? ` ${code}` : ''})` }
  }
  const reqs = s.once ? s.reqs.slice(1) : s.reqs
  const common = { url: child.url, connections: s.connections ?? args.connections, expect, once: s.once, timeoutS: s.timeoutS }
  let warmRps = 0
  if (args.warmup > 0) {
    const warm = await wrk({ ...common, requestsFile: reqFile(ctx, reqs), seconds: args.warmup })
    warmRps = warm.rps
    // Requests still queued in the server when wrk hung up would eat into the measured run: let them drain.
    await Bun.sleep(Math.min(10_000, Math.ceil(warm.p99Ms * 1.5)))
  }
  const measured = s.measureReqs ? await s.measureReqs(warmRps) : reqs
  const file = reqFile(ctx, measured)
  const db0 = ctx.pgUrl ? await backendCpu(args.pgUrl, new URL(ctx.pgUrl).pathname.slice(1)) : undefined
  const threads0 = args.threads ? threadCpuOf(child.pid) : undefined
  const cpu0 = cpuMsOf(child.pid)
  const r = await wrk({ ...common, requestsFile: file, seconds: s.seconds ?? args.duration })
  const cpu1 = cpuMsOf(child.pid)
  if (threads0 && r.requests > 0) {
    const threads1 = threadCpuOf(child.pid)
    const parts = [...threads1].map(([name, ms]) => [name, ms - (threads0.get(name) ?? 0)] as const).filter(([, ms]) => ms > 0).sort((a, b) => b[1] - a[1])
    const listed = parts.reduce((n, [, ms]) => n + ms, 0)
    const exited = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 - listed : 0
    say(`    threads, µs per request: ${parts.map(([name, ms]) => `${name} ${((ms * 1000) / r.requests).toFixed(0)}`).join(', ')}${exited > 0 ? `, exited threads ${((exited * 1000) / r.requests).toFixed(0)}` : ''}`)
  }
  const dbMs = await dbCpuSince(ctx, db0)
  const cpuUs = cpu0 !== undefined && cpu1 !== undefined && r.requests > 0 ? ((cpu1 - cpu0) * 1000) / r.requests : undefined
  const dbCpuUs = dbMs !== undefined && r.requests > 0 ? (dbMs * 1000) / r.requests : undefined
  const mem = memoryOf(child.pid)
  const odd = Object.entries(r.statuses).filter(([k]) => !expect.includes(Number(k)))
  say(`  ${s.name}: ${r.rps.toFixed(1)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, errors ${r.errors}, server CPU ${cpuUs?.toFixed(0) ?? '?'} µs/req${dbCpuUs === undefined ? '' : `, db CPU ${dbCpuUs.toFixed(0)} µs/req`}${odd.length ? ` (${odd.map(([k, v]) => `${v}×${k}`).join(', ')})` : ''}`)
  return { scenario: s.name, rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, errors: r.errors, rssMiB: mem?.rssMiB, cpuUs, dbCpuUs, note: odd.length ? odd.map(([k, v]) => `${v}×${k}`).join(', ') : undefined }
}

const want = (name: string) => args.only.length === 0 || args.only.includes(name)

/** Requests of the read scenarios, on sessions inserted for the purpose. */
async function readRequests(ctx: Ctx, sessions: number) {
  const users = await ctx.minter.sessionsWithTokens(ctx.store, spread(ctx.seeded.userIds, sessions))
  const admins = await ctx.minter.sessionsWithTokens(ctx.store, ctx.seeded.adminIds)
  const targets = spread(ctx.seeded.userIds, 1000)
  return {
    me: users.map((u): Req => ({ method: 'GET', path: '/v1/me', token: u.token })),
    users: admins.map((a): Req => ({ method: 'GET', path: '/v1/users?limit=20', token: a.token })),
    authz: targets.map((t, i): Req => ({ method: 'POST', path: '/v1/authz/check', token: admins[i % admins.length]!.token, body: { userId: t, permission: 'users:read' } })),
    adminToken: admins[0]!.token,
  }
}

/**
 * Login runs with at most 16 connections and at least 5 s: each login is one argon2id verification on the
 * one server core, so more connections add only queueing (seconds of latency), not throughput.
 */
const LOGIN_CONNECTIONS = Math.min(args.connections, 16)
const loginScenario = (ctx: Ctx, tag = ''): Scenario => ({
  name: `POST /v1/auth/login (${LOGIN_CONNECTIONS} conn)${tag}`,
  reqs: loginRequests(ctx),
  timeoutS: 60,
  connections: LOGIN_CONNECTIONS,
  seconds: Math.max(args.duration, 5),
})

function loginRequests(ctx: Ctx): Req[] {
  const n = Math.min(ctx.users, 10_000)
  const idx = spread(Array.from({ length: ctx.users }, (_, i) => i), n)
  return idx.map((i): Req => ({ method: 'POST', path: '/v1/auth/login', body: { email: userEmail(i), password: PASSWORD } }))
}

async function refreshScenario(ctx: Ctx): Promise<Scenario> {
  const mk = async (count: number) =>
    (await ctx.store.insertRefreshTokens(ctx.secret, Array.from({ length: count }, (_, i) => ctx.seeded.userIds[i % ctx.seeded.userIds.length]!))).map(
      (t): Req => ({ method: 'POST', path: '/v1/auth/refresh', body: { refreshToken: t } }),
    )
  // Warm-up tokens for up to 10,000 refreshes a second; the measured run gets 1.5x what the warm-up rate needs.
  const warm = await mk(1 + Math.max(2000, args.warmup * 10_000))
  return {
    name: 'POST /v1/auth/refresh',
    reqs: warm,
    once: true,
    measureReqs: (rps) => mk(Math.min(3_000_000, Math.ceil(Math.max(rps, 200) * args.duration * 1.5) + 1000)),
  }
}

/** Raw argon2id verifications per second on the server's core, with the seeded hash (the server's parameters). */
async function argon2Rate(ctx: Ctx, bracket = false): Promise<{ rate: number; detail: string }> {
  const hash = (await ctx.store.passwordHash(apiEmail(0)))!
  const out = await run(['taskset', '-c', '0', process.execPath, join(import.meta.dir, 'argon2-rate.ts')], {
    cwd: ROOT,
    env: { ...process.env, BENCH_HASH: hash, BENCH_PASSWORD: PASSWORD, BENCH_SECONDS: String(bracket ? 3 : Math.min(args.duration, 10)), BENCH_NODE_RS_ONLY: bracket ? '1' : '0' },
  })
  const j = JSON.parse(out.trim().split('\n').pop()!) as { bun: number; nodeRs?: number; params: string; bunVerifies: boolean }
  const rate = Math.max(j.bun, j.nodeRs ?? 0)
  const detail = bracket
    ? `@node-rs/argon2 ${(j.nodeRs ?? 0).toFixed(1)}/s`
    : `${j.params}; Bun.password ${j.bun.toFixed(1)}/s${j.nodeRs ? `, @node-rs/argon2 ${j.nodeRs.toFixed(1)}/s` : ''}${j.bunVerifies ? '' : ' (hash did not verify with the bench password)'}`
  say(`  argon2id raw${bracket ? ' (bracket)' : ''}: ${detail}`)
  return { rate, detail }
}

/** Login refusals under a rate limit: an IP hammering login with a wrong password after it is blocked. */
async function storm(ctx: Ctx): Promise<Row> {
  const name = '429 storm (blocked login)'
  const child = await startServer(ctx, { BULWARK_RATE_LIMIT: 'on', BULWARK_RATE_LIMIT_ANON: '1', BULWARK_RATE_LIMIT_ROUTES: 'login-ip=1/1m' })
  try {
    const body = JSON.stringify({ email: apiEmail(1), password: 'wrong-password-for-the-storm' })
    let blocked = false
    for (let i = 0; i < 30 && !blocked; i++) {
      const r = await fetch(`${child.url}/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      await r.arrayBuffer()
      blocked = r.status === 429
    }
    if (!blocked) return { scenario: name, note: 'n/a (no rate limiter in this build: 30 failed logins, no 429)' }
    const reqs: Req[] = [{ method: 'POST', path: '/v1/auth/login', body: { email: apiEmail(1), password: 'wrong-password-for-the-storm' } }]
    return await measure(ctx, child, { name, reqs, expect: [429] })
  } finally {
    await stop(child)
  }
}

/** Median time from spawning the binary to a 200 from /health/ready, on the existing database. */
async function startup(ctx: Ctx, runs = 7): Promise<{ median: number; all: number[] }> {
  const all: number[] = []
  for (let i = 0; i < runs; i++) {
    const port = freePort()
    const t0 = performance.now()
    const child = spawnPinned([BIN, 'serve'], { ...ctx.env, BULWARK_PORT: String(port) }, port, join(ctx.dir, 'server.log'))
    children.add(child)
    try {
      await waitReady(child, '/health/ready', 20_000, 1)
      all.push(performance.now() - t0)
    } finally {
      await stop(child)
    }
  }
  const sorted = [...all].sort((a, b) => a - b)
  return { median: sorted[Math.floor(sorted.length / 2)]!, all }
}

async function build(): Promise<void> {
  say('building dist/bulwark and dist/bench-baseline...')
  await run(['bun', 'run', 'build'], { cwd: ROOT })
  await run(['bun', 'build', 'bench/baseline.ts', '--compile', '--minify', '--sourcemap', '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig', '--outfile', BASELINE_BIN], { cwd: ROOT })
}

/** "4527 req/s = 0.47x baseline 9698 req/s" for a target `need = k * reference`. */
const fmtRatio = (v: number, need: number, refName: string, k: number) => {
  const ref = need / k
  return `${v.toFixed(0)} req/s = ${(v / (ref || 1)).toFixed(2)}x ${refName} ${ref.toFixed(0)} req/s`
}

/** The engines of a standard run: PostgreSQL is always measured next to SQLite (only same-run comparisons mean anything). */
const standardEngines = (): Engine[] => (args.db === 'sqlite' ? ['sqlite'] : ['sqlite', 'postgres'])

async function standard(): Promise<string> {
  const engines = standardEngines()
  const multi = engines.length > 1
  const ctxs: Ctx[] = []
  for (const e of engines) ctxs.push(await prepare(args.users, e))
  const rows: Row[] = []
  const v: Verdict[] = []
  const by = new Map<string, Row>()
  const brackets = new Map<Engine, { before: number; after: number; mean: number }>()
  /** The scenario's name, tagged with its engine when the run has two. */
  const tagged = (ctx: Ctx, name: string) => (multi ? `${name} [${ENGINE_NAME[ctx.engine]}]` : name)
  const add = (ctx: Ctx, key: string, r: Row) => {
    const row = { ...r, scenario: tagged(ctx, r.scenario) }
    rows.push(row)
    by.set(`${ctx.engine}:${key}`, row)
  }
  /** Runs one scenario on each engine in turn (so both see the machine in the same state). */
  const each = async (fn: (ctx: Ctx, i: number) => Promise<void>) => {
    for (let i = 0; i < ctxs.length; i++) await fn(ctxs[i]!, i)
  }
  const servers: Child[] = []
  const reads: Awaited<ReturnType<typeof readRequests>>[] = []
  try {
    for (const ctx of ctxs) {
      servers.push(await startServer(ctx))
      reads.push(await readRequests(ctx, Math.min(args.users, 1000)))
    }
    if (want('me')) await each(async (ctx, i) => add(ctx, 'me', await measure(ctx, servers[i]!, { name: 'GET /v1/me', reqs: reads[i]!.me })))
    if (want('users')) await each(async (ctx, i) => add(ctx, 'users', await measure(ctx, servers[i]!, { name: 'GET /v1/users?limit=20 (admin)', reqs: reads[i]!.users })))
    if (want('authz')) await each(async (ctx, i) => add(ctx, 'authz', await measure(ctx, servers[i]!, { name: 'POST /v1/authz/check', reqs: reads[i]!.authz })))
    // The raw rate moves with the machine from one minute to the next (69–178/s on this shared machine in one
    // day), so each login run is judged against the raw rate measured right before and right after it.
    if (want('login'))
      await each(async (ctx, i) => {
        const before = await argon2Rate(ctx, true)
        add(ctx, 'login', await measure(ctx, servers[i]!, loginScenario(ctx)))
        const after = await argon2Rate(ctx, true)
        brackets.set(ctx.engine, { before: before.rate, after: after.rate, mean: (before.rate + after.rate) / 2 })
        rows.push({ scenario: tagged(ctx, 'baseline: argon2id verify, 1 core, around the login run'), rps: (before.rate + after.rate) / 2, note: `mean of ${before.rate.toFixed(1)}/s just before and ${after.rate.toFixed(1)}/s just after` })
      })
    if (want('refresh')) await each(async (ctx, i) => add(ctx, 'refresh', await measure(ctx, servers[i]!, await refreshScenario(ctx))))
  } finally {
    for (const s of servers) await stop(s)
  }
  if (want('me') || want('users')) {
    await each(async (ctx, i) => {
      const port = freePort()
      const dbEnv: Record<string, string> = ctx.pgUrl ? { BENCH_PG_URL: ctx.pgUrl } : { BENCH_DB: join(ctx.dir, 'bulwark.sqlite') }
      const base = spawnPinned([BASELINE_BIN], { ...dbEnv, BENCH_PORT: String(port), BENCH_ISSUER: PUBLIC_URL, BENCH_AUDIENCE: AUDIENCE }, port, join(ctx.dir, 'baseline.log'))
      children.add(base)
      try {
        await waitReady(base)
        if (want('me')) add(ctx, 'base-me', await measure(ctx, base, { name: 'baseline: bare GET /v1/me', reqs: reads[i]!.me }))
        if (want('users')) add(ctx, 'base-users', await measure(ctx, base, { name: 'baseline: bare GET /v1/users?limit=20', reqs: reads[i]!.users }))
      } finally {
        await stop(base)
      }
    })
  }
  let argon: { rate: number; detail: string } | undefined
  if (want('login')) {
    // The raw rate does not depend on the engine: measured once, with the seeded hash.
    argon = await argon2Rate(ctxs[0]!)
    rows.push({ scenario: 'baseline: argon2id verify, 1 core', rps: argon.rate, note: argon.detail })
  }
  if (want('storm')) await each(async (ctx) => add(ctx, 'storm', await storm(ctx)))
  const starts = new Map<Engine, { median: number; all: number[] }>()
  if (want('startup')) {
    await each(async (ctx) => {
      const start = await startup(ctx)
      starts.set(ctx.engine, start)
      say(`  start-up to ready${multi ? ` (${ENGINE_NAME[ctx.engine]})` : ''}: ${start.all.map((x) => x.toFixed(0)).join(', ')} ms`)
      rows.push({ scenario: tagged(ctx, 'start-up to /health/ready (median of 7)'), note: `${start.median.toFixed(0)} ms` })
    })
  }
  for (const ctx of ctxs) {
    const g = (k: string) => by.get(`${ctx.engine}:${k}`)
    const t = (target: string) => (multi ? `[${ENGINE_NAME[ctx.engine]}] ${target}` : target)
    if (want('me')) {
      v.push(atLeast(t('GET /v1/me >= 1.0x bare baseline'), g('me')?.rps, g('base-me')?.rps, (x, l) => fmtRatio(x, l, 'baseline', 1)))
      v.push(cpuRatio(t('GET /v1/me >= 1.0x bare baseline, by server CPU per request'), g('me')?.cpuUs, g('base-me')?.cpuUs))
      v.push(below(t('GET /v1/me p99 < 10 ms at 64 connections'), g('me')?.p99Ms, 10, 'ms'))
    }
    if (want('users')) {
      v.push(atLeast(t('GET /v1/users?limit=20 >= 1.0x bare baseline'), g('users')?.rps, g('base-users')?.rps, (x, l) => fmtRatio(x, l, 'baseline', 1)))
      v.push(cpuRatio(t('GET /v1/users?limit=20 >= 1.0x bare baseline, by server CPU per request'), g('users')?.cpuUs, g('base-users')?.cpuUs))
      v.push(below(t('GET /v1/users?limit=20 p99 < 10 ms'), g('users')?.p99Ms, 10, 'ms'))
    }
    if (want('authz')) v.push(atLeast(t('POST /v1/authz/check >= 0.8x GET /v1/me'), g('authz')?.rps, mul(g('me')?.rps, 0.8), (x, l) => fmtRatio(x, l, '/v1/me', 0.8)))
    if (want('refresh')) v.push(atLeast(t('POST /v1/auth/refresh >= 0.25x GET /v1/me'), g('refresh')?.rps, mul(g('me')?.rps, 0.25), (x, l) => fmtRatio(x, l, '/v1/me', 0.25)))
    const br = brackets.get(ctx.engine)
    if (want('login') && br) v.push(atLeast(t('login >= 0.9x raw argon2id verify rate (measured just before and after the login run)'), g('login')?.rps, br.mean * 0.9, (x) => `${x.toFixed(1)} logins/s vs ${br.mean.toFixed(1)} verifies/s (${br.before.toFixed(1)} before, ${br.after.toFixed(1)} after): ${(x / br.mean).toFixed(2)}x`))
    if (want('storm')) v.push(atLeast(t('a refused login costs < 1/20 of a login (429 rate >= 20x login rate)'), g('storm')?.rps, mul(g('login')?.rps, 20), (x) => `${x.toFixed(0)} refusals/s vs ${g('login')!.rps!.toFixed(1)} logins/s: ${(x / g('login')!.rps!).toFixed(0)}x`))
    const start = starts.get(ctx.engine)
    if (start) v.push(below(t('start-up of the binary to /health/ready < 300 ms (median)'), start.median, 300, 'ms'))
  }
  for (const ctx of ctxs) await release(ctx)
  if (!multi) return body(rows, v, ctxs)
  // Side by side: the same scenario on both engines, from this run.
  const keys: [string, string][] = [
    ['me', 'GET /v1/me'],
    ['users', 'GET /v1/users?limit=20 (admin)'],
    ['authz', 'POST /v1/authz/check'],
    ['login', `POST /v1/auth/login (${LOGIN_CONNECTIONS} conn)`],
    ['refresh', 'POST /v1/auth/refresh'],
    ['base-me', 'baseline: bare GET /v1/me'],
    ['base-users', 'baseline: bare GET /v1/users?limit=20'],
    ['storm', '429 storm (blocked login)'],
  ]
  const pairs = keys
    .filter(([k]) => by.has(`sqlite:${k}`) || by.has(`postgres:${k}`))
    .map(([k, name]) => ({ scenario: name, sqlite: by.get(`sqlite:${k}`), postgres: by.get(`postgres:${k}`) }))
  if (starts.size) pairs.push({ scenario: 'start-up to /health/ready (median of 7)', sqlite: { scenario: '', note: `${starts.get('sqlite')?.median.toFixed(0)} ms` }, postgres: { scenario: '', note: `${starts.get('postgres')?.median.toFixed(0)} ms` } })
  return ['## SQLite and PostgreSQL side by side', '', engineTable(pairs), '', body(rows, v, ctxs)].join('\n')
}

/**
 * The throughput ratio a dedicated core would give (baseline CPU per request / ours): the same target as
 * the req/s ratio, but not moved by other processes sharing the server's core.
 */
const cpuRatio = (target: string, ours: number | undefined, base: number | undefined) =>
  atLeast(target, ours === undefined || base === undefined ? undefined : base / ours, 1, (x) => `${ours!.toFixed(0)} µs vs ${base!.toFixed(0)} µs per request = ${x.toFixed(2)}x`)

const mul = (x: number | undefined, k: number) => (x === undefined ? undefined : x * k)

/** The one engine of --soak and --profile. */
const soloEngine = (): Engine => (args.db === 'postgres' ? 'postgres' : 'sqlite')

async function soak(): Promise<string> {
  // RSS every second of the measured run: the drift of its plateau is the slope from PLATEAU_S on.
  const samples: { s: number; mib: number; anon?: number; file?: number }[] = []
  const ctx = await prepare(args.users, soloEngine())
  const heapDir = join(ctx.dir, 'heap')
  const server = args.heap ? await startFromSource(ctx, ['--heap-prof-md', `--heap-prof-dir=${heapDir}`]) : await startServer(ctx)
  const rows: Row[] = []
  const v: Verdict[] = []
  try {
    const reads = await readRequests(ctx, Math.min(args.users, 20_000))
    // Routes missing from this build (404) are left out of the mix rather than counted.
    const ok = async (r: Req) =>
      (await fetch(server.url + r.path, { method: r.method, headers: { authorization: `Bearer ${r.token}`, 'content-type': 'application/json' }, body: r.body === undefined ? undefined : JSON.stringify(r.body) })).status === 200
    const withUsers = await ok(reads.users[0]!)
    const withAuthz = await ok(reads.authz[0]!)
    const mixed: Req[] = []
    for (let i = 0; i < reads.me.length; i++) {
      mixed.push(reads.me[i]!)
      if (withUsers && i % 4 === 0) mixed.push(reads.users[i % reads.users.length]!)
      if (withAuthz && i % 4 === 2) mixed.push(reads.authz[i % reads.authz.length]!)
    }
    const kinds = ['me', withUsers ? 'users' : '', withAuthz ? 'authz' : ''].filter(Boolean).join(', ')
    const idle = memoryOf(server.pid)
    rows.push({ scenario: 'server idle after start', note: 'RSS', rssMiB: idle?.rssMiB })
    let t0 = 0
    const sampler = setInterval(() => {
      const m = memoryOf(server.pid)
      if (!m) return
      t0 ||= performance.now()
      samples.push({ s: (performance.now() - t0) / 1000, mib: m.rssMiB, anon: m.anonMiB, file: m.fileMiB })
    }, 1000)
    const r = await measure(ctx, server, { name: `mixed reads for ${args.duration} s (${kinds})`, reqs: mixed })
    clearInterval(sampler)
    const mem = memoryOf(server.pid)
    const split = (m: typeof mem) => (m?.anonMiB === undefined ? undefined : `anonymous ${m.anonMiB.toFixed(1)} MiB, file-backed ${m.fileMiB?.toFixed(1)} MiB`)
    rows[rows.length - 1] = { ...rows[rows.length - 1]!, note: ['RSS', split(idle)].filter(Boolean).join('; ') }
    rows.push({ ...r, note: [r.note, split(mem)].filter(Boolean).join('; ') || undefined })
    const drift = plateauDrift(samples)
    if (drift) {
      // The same slope for each part of RSS: anonymous (the heaps) and file-backed (binary, database mmap).
      const part = (k: 'anon' | 'file') => plateauDrift(samples.filter((x) => x[k] !== undefined).map((x) => ({ s: x.s, mib: x[k]! })))
      const sign = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`
      const [anon, file] = [part('anon'), part('file')]
      const parts = anon && file ? `; anonymous ${sign(anon.mibPerMin)} (${anon.fromMiB.toFixed(1)} → ${anon.toMiB.toFixed(1)} MiB), file-backed ${sign(file.mibPerMin)} (${file.fromMiB.toFixed(1)} → ${file.toMiB.toFixed(1)} MiB)` : ''
      const se = drift.seMibPerMin === undefined ? '' : ` ± ${drift.seMibPerMin.toFixed(2)} (fit and standard error over ${drift.batches} 30-s batch means)`
      rows.push({ scenario: `RSS drift of the plateau, from ${Math.round(drift.fromS)} s (${drift.n} samples, ${drift.fromMiB.toFixed(1)} → ${drift.toMiB.toFixed(1)} MiB)`, note: `${sign(drift.mibPerMin)}${se} MiB a minute (least squares)${parts}` })
      // The statistic of stop 25 (the second half only), for comparison with its results.
      const second = plateauDrift(samples, (samples.at(-1)?.s ?? 0) / 2)
      if (second && second.fromS !== drift.fromS) {
        const se2 = second.seMibPerMin === undefined ? '' : ` ± ${second.seMibPerMin.toFixed(2)} (${second.batches} batch means)`
        rows.push({ scenario: `RSS drift over the second half only (${second.n} samples)`, note: `${sign(second.mibPerMin)}${se2} MiB a minute` })
      }
      // The target is for a 10-minute soak (bun run bench --soak --duration 600); shorter runs report the slope only.
      if (args.duration >= 600) {
        const target = `RSS plateau drifts < 0.5 MiB a minute over a ${Math.round(args.duration / 60)}-minute soak`
        const [x, se] = [Math.abs(drift.mibPerMin), drift.seMibPerMin]
        // Judged with its uncertainty: PASS only when |slope| + 2 standard errors is under the limit, MISS when
        // |slope| - 2 standard errors reaches it, UNSETTLED between.
        if (se === undefined) v.push(below(target, x, 0.5, 'MiB a minute'))
        else v.push({ target, measured: `${x.toFixed(2)} ± ${se.toFixed(2)} MiB a minute (2 standard errors: ${Math.max(0, x - 2 * se).toFixed(2)} to ${(x + 2 * se).toFixed(2)})`, verdict: x + 2 * se < 0.5 ? 'PASS' : x - 2 * se >= 0.5 ? 'MISS' : 'UNSETTLED' })
      }
    }
    rows.push({ scenario: 'peak RSS (VmHWM)', note: 'RSS', rssMiB: mem?.peakMiB })
    if (samples.length) rows.push({ scenario: `mean RSS of the ${samples.length} samples (every second)`, note: 'RSS', rssMiB: samples.reduce((a, x) => a + x.mib, 0) / samples.length })
    // What each in-process cache holds at the end against its bound (bulwark_cache_entries / bulwark_cache_max_entries).
    const caches = await cacheFill(server.url)
    if (caches.length) {
      rows.push({ scenario: 'caches at the end (entries / bound)', note: caches.map((c) => `${c.cache} ${c.entries.toLocaleString('en-US')}/${c.max.toLocaleString('en-US')}`).join(', ') })
    }
    v.push(below(`server RSS < 150 MiB after ${args.duration} s with ${args.users.toLocaleString('en-US')} users`, mem?.rssMiB, 150, 'MiB'))
  } finally {
    await stop(server)
  }
  const extra: string[] = []
  if (samples.length) extra.push('', `## RSS samples (MiB, one a second, ${samples.length})`, '', samples.map((x) => x.mib.toFixed(0)).join(' ').replace(/((?:\S+ ){30})/g, '$1\n'))
  if (args.heap) {
    const file = [...new Bun.Glob('*.md').scanSync(heapDir)][0]
    if (file) {
      const saved = join(ROOT, 'dist', 'bench-heap.md')
      await Bun.write(saved, Bun.file(join(heapDir, file)))
      const text = await Bun.file(saved).text()
      const summary = /## Summary[\s\S]*?\n\n(\|[\s\S]*?)\n\n/.exec(text)?.[1] ?? ''
      const top = /## Top 50 Types by Retained Size[\s\S]*?\n\n(\|[\s\S]*?)\n\n/.exec(text)?.[1]?.split('\n').slice(0, 32).join('\n') ?? ''
      say(`  heap profile saved to ${saved}`)
      extra.push('', '## Heap at the end (server from source, `bun --heap-prof-md`)', '', summary, '', top)
    }
  }
  await release(ctx)
  return body(rows, v, [ctx]) + extra.join('\n')
}

/** Each in-process cache's entries and bound from the server's /metrics (empty for a build without them). */
async function cacheFill(url: string): Promise<{ cache: string; entries: number; max: number }[]> {
  try {
    const m = parseProm(await (await fetch(`${url}/metrics`)).text())
    return select(m, 'bulwark_cache_max_entries').map((b) => ({ cache: b.labels.cache!, max: b.value, entries: valueOf(m, 'bulwark_cache_entries', { cache: b.labels.cache! }) ?? 0 }))
  } catch {
    return []
  }
}

/** The server from source (`bun <flags> src/index.ts serve`), pinned like the binary: for the profiles. */
async function startFromSource(ctx: Ctx, flags: string[]): Promise<Child> {
  const port = freePort()
  const child = spawnPinned([process.execPath, ...flags, join(ROOT, 'src', 'index.ts'), 'serve'], { ...ctx.env, BULWARK_PORT: String(port) }, port, join(ctx.dir, 'source-server.log'))
  children.add(child)
  await waitReady(child)
  return child
}

/**
 * CPU profile of GET /v1/me: the server runs from source under `bun --cpu-prof` (pinned like the binary),
 * wrk drives it for --duration seconds, SIGTERM makes it write the .cpuprofile, and the functions with the
 * most self time are listed (path relative to the repository, or the runtime's own frames).
 */
async function profile(): Promise<string> {
  const ctx = await prepare(args.users, soloEngine())
  const profDir = join(ctx.dir, 'profile')
  const port = freePort()
  const child = spawnPinned(
    [process.execPath, '--cpu-prof', `--cpu-prof-dir=${profDir}`, join(ROOT, 'src', 'index.ts'), 'serve'],
    { ...ctx.env, BULWARK_PORT: String(port) },
    port,
    join(ctx.dir, 'profile-server.log'),
  )
  children.add(child)
  let row: Row
  try {
    await waitReady(child)
    if (args.only.includes('login')) row = await measure(ctx, child, { ...loginScenario(ctx), name: 'POST /v1/auth/login (from source, under --cpu-prof)' })
    else if (args.only.includes('refresh')) row = await measure(ctx, child, { ...(await refreshScenario(ctx)), name: 'POST /v1/auth/refresh (from source, under --cpu-prof)' })
    else {
      const reads = await readRequests(ctx, Math.min(args.users, 1000))
      row = args.only.includes('users')
        ? await measure(ctx, child, { name: 'GET /v1/users?limit=20 (from source, under --cpu-prof)', reqs: reads.users })
        : args.only.includes('authz')
          ? await measure(ctx, child, { name: 'POST /v1/authz/check (from source, under --cpu-prof)', reqs: reads.authz })
          : await measure(ctx, child, { name: 'GET /v1/me (from source, under --cpu-prof)', reqs: reads.me })
    }
  } finally {
    await stop(child)
  }
  const file = [...new Bun.Glob('*.cpuprofile').scanSync(profDir)][0]
  if (!file) throw new Error(`no .cpuprofile written in ${profDir}`)
  const saved = join(ROOT, 'dist', 'bench-me.cpuprofile')
  await Bun.write(saved, Bun.file(join(profDir, file)))
  const top = topSelf(JSON.parse(await Bun.file(saved).text()) as CpuProfile, 25)
  say(`  profile saved to ${saved} (open it in Chrome DevTools or speedscope)`)
  const lines = top.map((t) => `| ${t.pct.toFixed(1)} % | ${t.fn} | ${t.where} |`)
  await release(ctx)
  return [resultsTable([row]), '', `## Top self time (${args.only.includes('login') ? 'POST /v1/auth/login' : args.only.includes('refresh') ? 'POST /v1/auth/refresh' : args.only.includes('users') ? 'GET /v1/users?limit=20' : args.only.includes('authz') ? 'POST /v1/authz/check' : 'GET /v1/me'})`, '', '| self | function | where |', '|---|---|---|', ...lines].join('\n')
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]
  samples: number[]
  timeDeltas: number[]
}

/** Self time per function (name + file + line), as a share of all samples. */
function topSelf(p: CpuProfile, n: number): { pct: number; fn: string; where: string }[] {
  const byId = new Map(p.nodes.map((x) => [x.id, x.callFrame]))
  const self = new Map<string, number>()
  let total = 0
  p.samples.forEach((id, i) => {
    const f = byId.get(id)
    const dt = p.timeDeltas[i] ?? 0
    total += dt
    if (!f) return
    const url = f.url.startsWith(ROOT) ? f.url.slice(ROOT.length + 1) : f.url.replace(/^.*node_modules\//, '')
    const key = `${f.functionName || '(anonymous)'}\u0000${url ? `${url}:${f.lineNumber + 1}` : '(native)'}`
    self.set(key, (self.get(key) ?? 0) + dt)
  })
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => {
      const [fn, where] = k.split('\u0000')
      return { pct: (100 * v) / (total || 1), fn: fn!, where: where! }
    })
}

/** Walks the user list to page `page` (limit 20) and returns that page's cursor. */
async function cursorOfPage(url: string, token: string, page: number): Promise<string | undefined> {
  let cursor: string | undefined
  for (let p = 1; p < page; p++) {
    const r = await fetch(`${url}/v1/users?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers: { authorization: `Bearer ${token}` } })
    if (r.status !== 200) return undefined
    const j = (await r.json()) as { nextCursor?: string | null }
    if (!j.nextCursor) return undefined
    cursor = j.nextCursor
  }
  return cursor
}

/** CPU per request of a row: the server's, plus the database backends' on PostgreSQL. */
const cpuOf = (r: Row) => (r.cpuUs === undefined ? undefined : r.cpuUs + (r.dbCpuUs ?? 0))

/** The engines of --scale: each is compared with itself at two sizes, so --db postgres runs PostgreSQL alone. */
const scaleEngines = (): Engine[] => (args.db === 'both' ? ['sqlite', 'postgres'] : [args.db])

async function scale(): Promise<string> {
  const sizes = [1000, args.users]
  const engines = scaleEngines()
  const multi = engines.length > 1
  const rows: Row[] = []
  const v: Verdict[] = []
  const used: Ctx[] = []
  for (const engine of engines) {
    const fig: Record<string, Record<string, number | undefined>> = {}
    for (const n of sizes) {
      const ctx = await prepare(n, engine)
      const server = await startServer(ctx)
      const f: Record<string, number | undefined> = (fig[n] = {})
      const tag = ` @ ${n.toLocaleString('en-US')} users${multi ? ` [${ENGINE_NAME[engine]}]` : ''}`
      try {
        const reads = await readRequests(ctx, 1000)
        const me = await measure(ctx, server, { name: `GET /v1/me${tag}`, reqs: reads.me })
        const login = await measure(ctx, server, loginScenario(ctx, tag))
        const p1 = await measure(ctx, server, { name: `GET /v1/users page 1${tag}`, reqs: reads.users })
        rows.push(me, login, p1)
        Object.assign(f, { me: me.rps, login: login.rps, p1: p1.rps, meCpu: cpuOf(me), loginCpu: cpuOf(login), p1Cpu: cpuOf(p1) })
        if (n >= 5000 * 20 + 20) {
          const t0 = performance.now()
          const cursor = await cursorOfPage(server.url, reads.adminToken, 5000)
          say(`  walked 4,999 pages of cursors in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
          if (cursor) {
            const reqs = reads.users.map((r) => ({ ...r, path: `/v1/users?limit=20&cursor=${encodeURIComponent(cursor)}` }))
            const p5000 = await measure(ctx, server, { name: `GET /v1/users page 5000${tag}`, reqs })
            rows.push(p5000)
            f.p5000 = p5000.rps
            f.p5000Cpu = cpuOf(p5000)
          } else rows.push({ scenario: `GET /v1/users page 5000${tag}`, note: 'n/a (route missing or no cursor)' })
        }
      } finally {
        await stop(server)
      }
      await release(ctx)
      if (n !== sizes[sizes.length - 1]) rmSync(ctx.dir, { recursive: true, force: true })
      else used.push(ctx)
    }
    const small = fig[sizes[0]!]!
    const big = fig[sizes[1]!]!
    const within = (label: string, b: number | undefined, s: number | undefined) =>
      atLeast(label, b, s === undefined ? undefined : s / 1.2, (x) => `${x.toFixed(1)} vs ${s!.toFixed(1)} req/s: ${x > 0 ? `${(s! / x).toFixed(2)}x slower` : 'nothing completed'}`)
    const bigN = sizes[1]!.toLocaleString('en-US')
    const t = (target: string) => (multi || engine === 'postgres' ? `[${ENGINE_NAME[engine]}] ${target}` : target)
    // The same comparisons by CPU per request (server, plus PostgreSQL's backends): not moved by other work on the cores.
    const withinCpu = (label: string, b: number | undefined, s: number | undefined) =>
      atMost(label, b, s === undefined ? undefined : s * 1.2, (x) => `${x.toFixed(0)} vs ${s!.toFixed(0)} µs per request: ${(x / s!).toFixed(2)}x`)
    const cpuWhat = engine === 'postgres' ? 'server + database CPU per request' : 'server CPU per request'
    v.push(
      within(t(`login at ${bigN} users within 1.2x of 1,000 users`), big.login, small.login),
      within(t(`GET /v1/me at ${bigN} users within 1.2x of 1,000 users`), big.me, small.me),
      within(t(`user list page 5,000 within 1.2x of page 1 (${bigN} users)`), big.p5000, big.p1),
      withinCpu(t(`login at ${bigN} users within 1.2x of 1,000 users, by ${cpuWhat}`), big.loginCpu, small.loginCpu),
      withinCpu(t(`GET /v1/me at ${bigN} users within 1.2x of 1,000 users, by ${cpuWhat}`), big.meCpu, small.meCpu),
      withinCpu(t(`user list page 5,000 within 1.2x of page 1 (${bigN} users), by ${cpuWhat}`), big.p5000Cpu, big.p1Cpu),
    )
  }
  return body(rows, v, used)
}

function body(rows: Row[], v: Verdict[], ctxs: Ctx[]): string {
  const ctx = ctxs[ctxs.length - 1]!
  const pg = ctxs.some((c) => c.engine === 'postgres')
  const lite = ctxs.some((c) => c.engine === 'sqlite')
  const how = [lite ? 'bun:sqlite in one transaction' : '', pg ? "Bun's SQL client on PostgreSQL in multi-row INSERTs of 5,000 rows in one transaction (then VACUUM ANALYZE)" : ''].filter(Boolean).join('; ')
  return [
    '## Results',
    '',
    resultsTable(rows),
    '',
    '## Targets',
    '',
    verdictTable(v),
    '',
    '## How the database was seeded',
    '',
    `- ${ctx.users.toLocaleString('en-US')} users inserted directly (${how}), all sharing ONE password hash: the one the server computed for an account registered through the API (so the server's own hasher and argon2id parameters); 5 accounts registered and one signed in through the real API.`,
    `- ${ADMINS} admins hold a bench-only role \`bench-admin\` (level 90, mfa_required = false, permissions users:read, authz:check) instead of the built-in \`admin\` (mfa_required = true), so a build that enforces MFA enrolment does not confine them to enrolment routes.`,
    '- Sessions for the read scenarios and refresh tokens are inserted directly; refresh tokens stored as hashToken(deriveKey(secret, "token-hash"), token) and access tokens signed with the server\'s current key (src/lib/crypto.ts), BULWARK_SECRET being set by the harness.',
    `- Server: compiled binary, BULWARK_ENV=${ctx.envName}, BULWARK_LOG_LEVEL=${args.logLevel} (stdout discarded), BULWARK_RATE_LIMIT=off except in the 429 storm (on, 1 anonymous request and 1 login per IP a minute).`,
    ...(pg
      ? [
          `- PostgreSQL: ${serverVersion ?? 'version unknown'} on this machine, BULWARK_DATABASE_URL naming a database created for the run (bw_bench_<random>, migrated by the server's first start, dropped at the end), default pool (BULWARK_DB_POOL_SIZE 10). The backends are not pinned: they run on either core, next to the server or wrk, and their CPU is not in "server CPU/req" but in "db CPU/req" (backends of the run's database alive at the end of the measured run, from /proc). The PostgreSQL baseline does the same reads with Bun's SQL client (a pool of 10).`,
        ]
      : []),
  ].join('\n')
}

let serverVersion: string | undefined

try {
  say(`bench: ${args.mode}${args.quick ? ' (quick)' : ''}${args.db === 'sqlite' ? '' : `, --db ${args.db}`}; ${machine.nproc} cores, ${machine.cpu}, bun ${machine.bun}, load ${machine.load}`)
  if (machine.nproc < 2) say('! fewer than 2 cores: server and load generator share one core, figures are not comparable')
  await ensureWrk()
  if (args.db !== 'sqlite') {
    const { SQL } = await import('bun')
    const { parsePgUrl } = await import('../src/db/pg/client')
    const a = new SQL({ adapter: 'postgres', ...parsePgUrl(args.pgUrl), max: 1, connectionTimeout: 10 })
    try {
      serverVersion = ((await a`SELECT version() AS v`)[0] as { v: string }).v.split(' on ')[0]
    } catch (e) {
      throw new Error(`--db ${args.db}: PostgreSQL at ${new URL(args.pgUrl).host} does not answer (${(e as Error).message}); set --pg-url or BENCH_PG_URL`)
    } finally {
      await a.close()
    }
    say(`PostgreSQL: ${serverVersion} at ${new URL(args.pgUrl).host}`)
  }
  await build()
  const text = args.mode === 'soak' ? await soak() : args.mode === 'scale' ? await scale() : args.mode === 'profile' ? await profile() : await standard()
  say(`\n${text}\n`)
  if (args.save) say(`results written to ${saveResults(join(import.meta.dir, 'results'), args, machine, text, started)}`)
} catch (e) {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`)
  process.exitCode = 1
} finally {
  for (const c of children) await c.stop()
  await dropDatabases()
  if (!process.env.BENCH_KEEP) rmSync(work, { recursive: true, force: true })
  else say(`kept ${work}`)
}
