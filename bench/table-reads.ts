// Which tables a sign-in reads on PostgreSQL: pg_stat_user_tables before and after N sign-ins, in-process (not a test). Usage: bun bench/table-reads.ts <repository root>. The statistics are flushed with a delay, so the figures are approximate.
const root = (await import("node:path")).resolve(process.cwd(), process.argv[2] ?? ".")
const { inProcessApp, PASSWORD } = await import(`${root}/bench/lib/in-process`)
const { createBenchDatabase, dropBenchDatabase } = await import(`${root}/bench/lib/store`)
const admin = 'postgres://postgres@127.0.0.1:5432/postgres'
const url = await createBenchDatabase(admin)
const { post, close: closeApp } = await inProcessApp('rt', { BULWARK_DATABASE_URL: url })
const n = 10
for (let i = 0; i < n; i++) await post('/v1/auth/register', { email: `u${i}@example.com`, password: PASSWORD })
const login = async () => { for (let i = 0; i < n; i++) { const r = await post('/v1/auth/login', { email: `u${i}@example.com`, password: PASSWORD }); if (r.status !== 200) throw new Error(String(r.status)); await r.arrayBuffer() } }
await login()
const sql = new Bun.SQL(url)
const snap = async (): Promise<Map<string, { scans: number; ins: number }>> => { await Bun.sleep(1500); return new Map((await sql`SELECT relname, seq_scan + coalesce(idx_scan,0) AS scans, n_tup_ins AS ins FROM pg_stat_user_tables`).map((r: any) => [r.relname, { scans: Number(r.scans), ins: Number(r.ins) }])) }
const xacts = async () => Number((await sql`SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`)[0].xact_commit)
const b = await snap(); const xb = await xacts()
const rounds = 5
for (let k = 0; k < rounds; k++) await login()
const a = await snap(); const xa = await xacts()
const per = (rounds * n)
for (const [t, v] of a) { const o = b.get(t)!; const ds = v.scans - o.scans, di = v.ins - o.ins; if (ds || di) console.log(`${t}: ${(ds / per).toFixed(2)} scans, ${(di / per).toFixed(2)} inserts per sign-in`) }
console.log(`commits per sign-in (incl. autocommit statements, and the stats reads): ${((xa - xb) / per).toFixed(2)}`)
await sql.close(); await closeApp(); await dropBenchDatabase(admin, url)
export {}
