/**
 * CPU per `POST /v1/auth/refresh`, in-process: C chains of refreshes in flight at once (each spends its own
 * token and goes on with the successor), through the real handler (every plugin, a SQLite file in a
 * temporary folder, production settings). In-process figures move far less between runs than the HTTP
 * bench on a shared machine, so a change to the refresh path can be judged on a few percent. Run it
 * pinned: `taskset -c 0 bun bench/refresh-work.ts [refreshes per chain] [chains]`; add `--cpu-prof` to bun
 * for a profile, `--frames` for the WAL frames (page writes) per refresh. `--pg [URL]`: on PostgreSQL instead (a
 * fresh database `bw_bench_<random>` on that server, default `$BENCH_PG_URL` or postgres@127.0.0.1, dropped at the
 * end), also reporting the CPU of its backends per refresh (from /proc: a server on this machine only). Not a
 * test: nothing asserts time.
 */
import { inProcessApp, PASSWORD } from './lib/in-process'
import { backendCpu, createBenchDatabase, dropBenchDatabase } from './lib/store'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a))
const PER_CHAIN = Number(nums[0] ?? 300)
const CHAINS = Number(nums[1] ?? 64)
const pgAt = process.argv.indexOf('--pg')
const pgAdmin = pgAt < 0 ? undefined : process.argv[pgAt + 1]?.startsWith('postgres') ? process.argv[pgAt + 1]! : (process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres')
const pgUrl = pgAdmin ? await createBenchDatabase(pgAdmin) : undefined
const { deps, post, close } = await inProcessApp('refresh-work', { BULWARK_ARGON2_MEMORY_KIB: '1024', BULWARK_ARGON2_TIME: '1', ...(pgUrl ? { BULWARK_DATABASE_URL: pgUrl } : {}) })
/** CPU (ms) of the run database's backends so far, summed; undefined without PostgreSQL on this machine. */
const dbCpu = async (): Promise<number | undefined> => {
  if (!pgAdmin || !pgUrl) return undefined
  const m = await backendCpu(pgAdmin, new URL(pgUrl).pathname.slice(1))
  return m ? [...m.values()].reduce((a, b) => a + b, 0) : undefined
}

const tokens: string[] = []
for (let i = 0; i < CHAINS; i++) {
  const email = `u${i}@example.com`
  const r = await post('/v1/auth/register', { email, password: PASSWORD })
  if (r.status !== 201) throw new Error(`register answered ${r.status}: ${await r.text()}`)
  const l = await post('/v1/auth/login', { email, password: PASSWORD })
  if (l.status !== 200) throw new Error(`login answered ${l.status}: ${await l.text()}`)
  tokens.push(((await l.json()) as { refreshToken: string }).refreshToken)
}

async function chain(i: number, n: number): Promise<void> {
  for (let k = 0; k < n; k++) {
    const r = await post('/v1/auth/refresh', { refreshToken: tokens[i] })
    if (r.status !== 200) throw new Error(`refresh answered ${r.status}: ${await r.text()}`)
    tokens[i] = ((await r.json()) as { refreshToken: string }).refreshToken
  }
}

async function run(label: string, n: number): Promise<void> {
  const d0 = await dbCpu()
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(tokens.map((_, i) => chain(i, n)))
  const c = process.cpuUsage(c0)
  const total = n * CHAINS
  const d1 = await dbCpu()
  const db = d0 !== undefined && d1 !== undefined ? `; backends ${(((d1 - d0) * 1000) / total).toFixed(0)} µs each` : ''
  console.log(`${label}: ${total} refreshes (${CHAINS} at once), ${((c.user + c.system) / total).toFixed(0)} µs CPU each (user ${(c.user / total).toFixed(0)}, system ${(c.system / total).toFixed(0)})${db}, ${((performance.now() - t0) / 1000).toFixed(2)} s`)
}

await run('warm-up', Math.ceil(PER_CHAIN / 3))
// --sql "…": (PostgreSQL) statements run on the bench database after the warm-up, for what-if comparisons of
// indexes and storage settings; the run prints what it ran.
const sqlAt = process.argv.indexOf('--sql')
if (sqlAt > 0 && pgUrl) {
  const text = process.argv[sqlAt + 1] ?? ''
  const admin = new Bun.SQL(pgUrl, { max: 1 })
  await admin.unsafe(text).simple()
  await admin.close()
  console.log(`ran: ${text}`)
}
// --frames: WAL frames (page writes) per refresh, with automatic checkpoints off for the measured run.
const sqlite = process.argv.includes('--frames') ? deps.storage.sqlite : undefined
sqlite?.run('PRAGMA wal_checkpoint(TRUNCATE)')
sqlite?.run('PRAGMA wal_autocheckpoint = 0')
let commits = 0
if (sqlite) {
  const run = sqlite.run.bind(sqlite)
  sqlite.run = ((q: string, ...rest: unknown[]) => {
    if (q === 'COMMIT') commits++
    return (run as (q: string, ...r: unknown[]) => unknown)(q, ...rest)
  }) as typeof sqlite.run
}
await run('measured', PER_CHAIN)
if (sqlite) {
  const r = sqlite.query<{ log: number }, []>('PRAGMA wal_checkpoint(PASSIVE)').get()
  const n = PER_CHAIN * CHAINS
  console.log(`WAL frames: ${r?.log} for ${n} refreshes, ${((r?.log ?? 0) / n).toFixed(2)} per refresh; ${commits} commits, ${(n / (commits || 1)).toFixed(1)} refreshes per commit`)
}
await close()
if (pgAdmin && pgUrl) await dropBenchDatabase(pgAdmin, pgUrl)
