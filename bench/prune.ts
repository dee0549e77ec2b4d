/**
 * Retention pruning on a real database file: seeds N rows past their retention in each pruned table
 * (security events, revoked sessions with a spent refresh token each, sent mail) plus N recent security
 * events that must stay, then times one pruning round and its longest single batch (the longest the
 * event loop is held). Not part of `bun test`.
 *
 *   bun run bench/prune.ts [--rows 200000] [--batch 500]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { testConfig } from '../src/config'
import { openDatabase } from '../src/db/client'
import { FakeClock } from '../src/lib/clock'
import { createLogger } from '../src/lib/logger'
import { PRUNE_BATCH, Pruner } from '../src/modules/retention/service'

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const rows = arg('rows', 200_000)
const batch = arg('batch', PRUNE_BATCH)
const DAY = 86_400_000

const dir = mkdtempSync(join(tmpdir(), 'bw-prune-'))
const file = join(dir, 'bulwark.sqlite')
const h = openDatabase(file)
const db = h.sqlite
const clock = new FakeClock()
const now = clock.now()
const old = now - 400 * DAY

const t0 = performance.now()
db.run("INSERT INTO users (id, email, created_at, updated_at) VALUES ('u1', 'u1@example.com', 0, 0)")
db.transaction(() => {
  const ev = db.prepare("INSERT INTO security_events (type, outcome, actor_id, ip, details, created_at) VALUES ('login', 'success', 'u1', '203.0.113.7', '{\"amr\":[\"pwd\"]}', ?)")
  const se = db.prepare("INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, auth_time, revoked_at, ip, user_agent) VALUES (?, 'u1', ?, ?, ?, ?, ?, '203.0.113.7', 'bench/1.0')")
  const rt = db.prepare('INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?)')
  const ml = db.prepare("INSERT INTO mail_outbox (id, \"to\", subject, text, status, next_attempt_at, created_at, sent_at) VALUES (?, 'x@example.com', 'Verify your email', '', 'sent', ?, ?, ?)")
  for (let i = 0; i < rows; i++) {
    ev.run(old + i)
    ev.run(now - i) // recent: stays
    const s = `s${i}`
    se.run(s, old, old, now + DAY, old, old + i)
    rt.run(`r${i}`, s, `h${i}`, old, now + DAY, old + i)
    ml.run(`m${i}`, old, old, old)
  }
})()
// The seed's own WAL is checkpointed now, so its cost is not charged to the first pruning batch.
db.run('PRAGMA wal_checkpoint(TRUNCATE)')
const seedMs = performance.now() - t0

const config = testConfig({ BULWARK_DB_PATH: file })
const times: number[] = []
const pruner = new Pruner({ storage: { sqlite: db }, clock, config, logger: createLogger('silent') }, { batch, onBatch: (ms) => times.push(ms) })
const report = await pruner.runOnce()
const deleted = Object.values(report.deleted).reduce((x, y) => x + y, 0)
const left = db.query<{ n: number }, []>('SELECT count(*) AS n FROM security_events').get()!.n

console.log(`seeded ${rows} rows per table (+${rows} recent events) in ${(seedMs / 1000).toFixed(1)} s`)
console.log(`pruned ${deleted} rows in ${report.batches} batches of ${batch}: ${(report.totalMs / 1000).toFixed(2)} s in all, longest batch ${report.longestBatchMs.toFixed(2)} ms, ${Math.round(deleted / (report.totalMs / 1000))} rows/s`)
times.sort((x, y) => x - y)
const pct = (p: number) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))]!.toFixed(2)
console.log(`batch p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${pct(100)} ms`)
console.log(`by rule: ${JSON.stringify(report.deleted)}; recent events left: ${left}`)
h.close()
rmSync(dir, { recursive: true, force: true })
