#!/usr/bin/env bun
/**
 * `bun bench/pg-driver.ts`: Bun's built-in SQL client against postgres.js (both through drizzle, as the
 * server would use them) on the queries of the hot paths, on a fresh database on BULWARK_TEST_PG_URL (default
 * postgres://postgres@127.0.0.1:5432/postgres), dropped at the end. Not a test; nothing asserts time.
 * Each driver runs each workload for --seconds S (default 5) with --concurrency C (default 16) callers
 * on a pool of 10, in alternating rounds (A B B A) so drift on a shared machine hits both alike. Prints
 * operations per second and client CPU per operation (this process's user+system time).
 */
import { SQL } from 'bun'
import { eq, and, isNull } from 'drizzle-orm'
import { drizzle as drizzleBun } from 'drizzle-orm/bun-sql'
import { drizzle as drizzlePgJs } from 'drizzle-orm/postgres-js'
import postgres from 'postgres'
import { parsePgUrl } from '../src/db/pg/client'
import { migratePg } from '../src/db/pg/migrate'
import * as schema from '../src/db/pg/schema'

const argv = process.argv.slice(2)
const flag = (name: string, d: number) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? Number(argv[i + 1]) : d
}
const SECONDS = flag('seconds', 5)
const CONCURRENCY = flag('concurrency', 16)
const base = process.env.BULWARK_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

const name = `bw_bench_drv_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`
const admin = new SQL({ adapter: 'postgres', ...parsePgUrl(base), max: 1 })
await admin.unsafe(`CREATE DATABASE "${name}"`)
const u = parsePgUrl(base)
const url = new URL(base)
url.pathname = `/${name}`

const bunSql = new SQL({ adapter: 'postgres', ...u, database: name, max: 10 })
const pgjs = postgres(url.toString(), { max: 10, onnotice: () => {} })
try {
  await migratePg(bunSql)
  const now = Date.now()
  const ids: string[] = []
  for (let i = 0; i < 1000; i++) ids.push(crypto.randomUUID())
  const seed = drizzleBun({ client: bunSql, schema })
  for (let i = 0; i < ids.length; i += 200) {
    await seed.insert(schema.users).values(ids.slice(i, i + 200).map((id, k) => ({ id, email: `u${i + k}@example.com`, name: `User ${i + k}`, passwordHash: 'x', createdAt: now, updatedAt: now })))
    await seed.insert(schema.sessions).values(ids.slice(i, i + 200).map((id) => ({ id, userId: id, createdAt: now, lastSeenAt: now, authTime: now, expiresAt: now + 86_400_000 })))
  }

  type Db = ReturnType<typeof drizzleBun<typeof schema>>
  const drivers: { name: string; db: Db }[] = [
    { name: 'Bun SQL (drizzle bun-sql)', db: drizzleBun({ client: bunSql, schema }) },
    { name: 'postgres.js 3.4.9 (drizzle postgres-js)', db: drizzlePgJs({ client: pgjs, schema }) as unknown as Db },
  ]
  let n = 0
  const pick = () => ids[n++ % ids.length]!
  const workloads: { name: string; make: (db: Db) => () => Promise<unknown> }[] = [
    {
      name: 'user by id',
      make: (db) => () => db.select({ id: schema.users.id, email: schema.users.email }).from(schema.users).where(eq(schema.users.id, pick())).limit(1),
    },
    {
      name: 'live session joined to its user',
      make: (db) => () =>
        db
          .select({ id: schema.users.id, email: schema.users.email, status: schema.users.status, expiresAt: schema.sessions.expiresAt })
          .from(schema.sessions)
          .innerJoin(schema.users, eq(schema.users.id, schema.sessions.userId))
          .where(and(eq(schema.sessions.id, pick()), isNull(schema.sessions.revokedAt)))
          .limit(1),
    },
    {
      name: 'users page of 20 (keyset by id)',
      make: (db) => () => db.select().from(schema.users).orderBy(schema.users.id).limit(20),
    },
    {
      name: 'transaction: update one row + insert one row',
      make: (db) => () =>
        db.transaction(async (tx) => {
          const id = pick()
          await tx.update(schema.sessions).set({ lastSeenAt: Date.now() }).where(eq(schema.sessions.id, id))
          await tx.insert(schema.securityEvents).values({ type: 'bench', outcome: 'info', actorId: id, createdAt: Date.now() }) // no jsonb: the schema's jsonb type is written for Bun's client
        }),
    },
  ]

  const cpu = () => {
    const r = process.resourceUsage()
    return (r.userCPUTime + r.systemCPUTime) / 1000 // ms
  }
  async function measure(run: () => Promise<unknown>): Promise<{ ops: number; cpuUs: number }> {
    const end = performance.now() + SECONDS * 1000
    let ops = 0
    const c0 = cpu()
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < end) {
          await run()
          ops++
        }
      }),
    )
    const secs = (performance.now() - t0) / 1000
    return { ops: ops / secs, cpuUs: ((cpu() - c0) * 1000) / ops }
  }

  const lines = [`| workload | ${drivers.map((d) => d.name).join(' | ')} | ratio (Bun / postgres.js) |`, `|---|${drivers.map(() => '---|').join('')}---|`]
  for (const w of workloads) {
    const runs = drivers.map((d) => w.make(d.db))
    for (const r of runs) await measure(r) // warm-up (prepared statements, pool)
    const sums = drivers.map(() => ({ ops: 0, cpu: 0 }))
    for (const order of [[0, 1], [1, 0]]) {
      for (const i of order) {
        const m = await measure(runs[i]!)
        sums[i]!.ops += m.ops / 2
        sums[i]!.cpu += m.cpuUs / 2
      }
    }
    lines.push(`| ${w.name} | ${sums.map((s) => `${Math.round(s.ops).toLocaleString('en-US')}/s, ${s.cpu.toFixed(0)} µs CPU`).join(' | ')} | ${(sums[0]!.ops / sums[1]!.ops).toFixed(2)}× ops, ${(sums[0]!.cpu / sums[1]!.cpu).toFixed(2)}× CPU |`)
    process.stdout.write(`${lines.at(-1)}\n`)
  }
  process.stdout.write(`\n${lines.join('\n')}\n\n${SECONDS} s per round, 2 rounds per driver, ${CONCURRENCY} callers, pool of 10, Bun ${Bun.version}\n`)
} finally {
  await bunSql.close()
  await pgjs.end()
  await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  await admin.close()
}
