/**
 * The work of a sign-in around the password hash, in-process: N sequential `POST /v1/auth/login` through the
 * real handler (every plugin, a SQLite file in a temporary folder, the production argon2id cost for the
 * accounts' hashes) with the verification either real or stubbed to "correct", and the process CPU per
 * sign-in (user + system) for each. `stubbed` is the work around the hash; `real - stubbed` what the hash
 * costs in the server. Run it pinned: `taskset -c 0 bun bench/login-work.ts [N]`; add `--cpu-prof` to bun for
 * a profile of the stubbed run. `--pg [URL]`: on PostgreSQL instead (a fresh database `bw_bench_<random>`, as in
 * bench/refresh-work.ts). Not a test: nothing asserts time.
 */
import { inProcessApp, PASSWORD } from './lib/in-process'
import { threadCpuOf } from './lib/proc'
import { createBenchDatabase, dropBenchDatabase } from './lib/store'

const N = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 400)
const pgAt = process.argv.indexOf('--pg')
const pgAdmin = pgAt < 0 ? undefined : process.argv[pgAt + 1]?.startsWith('postgres') ? process.argv[pgAt + 1]! : (process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres')
const pgUrl = pgAdmin ? await createBenchDatabase(pgAdmin) : undefined
const { deps, post, close } = await inProcessApp('login-work', pgUrl ? { BULWARK_DATABASE_URL: pgUrl } : {})

const users = 50
for (let i = 0; i < users; i++) {
  const r = await post('/v1/auth/register', { email: `u${i}@example.com`, password: PASSWORD })
  if (r.status !== 201 && r.status !== 200) throw new Error(`register answered ${r.status}: ${await r.text()}`)
}

async function run(label: string, n: number): Promise<void> {
  const th0 = threadCpuOf(process.pid)
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const r = await post('/v1/auth/login', { email: `u${i % users}@example.com`, password: PASSWORD })
    if (r.status !== 200) throw new Error(`login answered ${r.status}: ${await r.text()}`)
    await r.arrayBuffer()
  }
  const c = process.cpuUsage(c0)
  const ms = performance.now() - t0
  const t1 = threadCpuOf(process.pid)
  const byThread = [...t1].map(([k, v]) => [k, v - (th0.get(k) ?? 0)] as const).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${((v * 1000) / n).toFixed(0)}`).join(', ')
  console.log(`${label}: ${n} sign-ins, ${((c.user + c.system) / n).toFixed(0)} µs CPU each (user ${(c.user / n).toFixed(0)}, system ${(c.system / n).toFixed(0)}), ${(ms / n).toFixed(2)} ms wall each; by thread (µs): ${byThread}`)
}

const real = deps.hasher.verify.bind(deps.hasher)
if (!process.argv.includes('--stub-only') && !process.argv.includes('--sleep-only')) await run('real hash', Math.min(N, 100))
deps.hasher.verify = async () => true
if (!process.argv.includes('--sleep-only')) {
  await run('stubbed hash (warm-up)', N)
  await run('stubbed hash', N)
}
// --sleep: the verification stubbed as a 6 ms wait (no CPU): what the main thread spends while a login waits.
if (process.argv.includes('--sleep') || process.argv.includes('--sleep-only')) {
  deps.hasher.verify = async () => (await Bun.sleep(6), true)
  await run('stubbed hash, 6 ms wait', N)
}
deps.hasher.verify = real
await close()
if (pgAdmin && pgUrl) await dropBenchDatabase(pgAdmin, pgUrl)
