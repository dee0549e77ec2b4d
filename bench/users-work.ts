/**
 * CPU per GET /v1/users?limit=20 in-process (every plugin; 25 accounts, one a moderator), run pinned:
 * `taskset -c 0 bun bench/users-work.ts [root] [n] [--pg] [--cold]` (root: the checkout to measure, default `.`;
 * --cold: the page's entries are dropped from the list's view cache before every page, so each page renders all
 * of them; the role caches stay warm). Not a test.
 */
const root = (await import('node:path')).resolve(process.cwd(), process.argv[2] ?? '.')
const { inProcessApp, PASSWORD } = await import(`${root}/bench/lib/in-process`)
const { createBenchDatabase, dropBenchDatabase } = await import(`${root}/bench/lib/store`)
const N = Number(process.argv[3] ?? 3000)
const cold = process.argv.includes('--cold')
const pgAdmin = process.argv.includes('--pg') ? 'postgres://postgres@127.0.0.1:5432/postgres' : undefined
const pgUrl = pgAdmin ? await createBenchDatabase(pgAdmin) : undefined
const { deps, post, get, close } = await inProcessApp('users-work', pgUrl ? { BULWARK_DATABASE_URL: pgUrl } : {})
let first = ''
for (let i = 0; i < 25; i++) {
  const r = await post('/v1/auth/register', { email: `u${i}@example.com`, password: PASSWORD })
  const b: any = await r.json()
  if (i === 0) first = b.user?.id ?? b.id
}
await deps.rbac.assignSystem(first, 'moderator')
const tok = ((await (await post('/v1/auth/login', { email: 'u0@example.com', password: PASSWORD })).json()) as any).accessToken
// The first page's ids, and the service's private view cache (only --cold touches it).
const pageIds: string[] = ((await (await get('/v1/users?limit=20', { authorization: `Bearer ${tok}` })).json()) as any).items.map((u: any) => u.id)
const views = (deps.usersAdmin as unknown as { views: { delete(id: string): void; set(id: string, v: unknown): void } }).views
// One entry that stays: lru-cache empties itself by refilling all its arrays (O(its bound)) when the last entry goes.
if (cold) views.set('bench-keep', { updatedAt: 0, view: {} })
async function run(label: string, n: number) {
  const c0 = process.cpuUsage(); const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    if (cold) for (const id of pageIds) views.delete(id)
    const r = await get('/v1/users?limit=20', { authorization: `Bearer ${tok}` })
    if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`)
    await r.arrayBuffer()
  }
  const c = process.cpuUsage(c0)
  console.log(`${label}${cold ? ' (cold view cache)' : ''}: ${n} pages, ${((c.user + c.system) / n).toFixed(0)} µs CPU each, ${((performance.now() - t0) / n).toFixed(3)} ms wall`)
}
await run('warm-up', N); await run('measured', N)
await close(); if (pgAdmin && pgUrl) await dropBenchDatabase(pgAdmin, pgUrl)
export {}
