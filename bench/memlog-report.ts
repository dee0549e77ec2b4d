/**
 * Reads the lines bench/memlog.ts appended (the last server's: a gap of over 3 s starts a new one) and prints
 * the memory by part in windows of W seconds, then least-squares slopes of RSS, of the heap's space and of the
 * rest over 30-second batch means with the soak's own fit (bench/lib/drift.ts), for the second half and from
 * PLATEAU_S (120 s) on. Times are seconds since the server's
 * first line (its start), not since the bench's measured run began:
 * `bun bench/memlog-report.ts FILE [W]` (default 300). Not a test.
 *
 * "other" is the anonymous RSS less the heap's space (heapTotal) and the memory its objects hold outside it
 * (external): the runtime's own allocations (HTTP server, SQLite's page cache, JIT code, stacks, workers).
 */
import { readFileSync } from 'node:fs'
import { plateauDrift } from './lib/drift'

interface Line { t: number; rss: number; heapTotal: number; heapUsed: number; external: number; anonKb: number; fileKb: number }

const file = process.argv[2]
if (!file) throw new Error('usage: bun bench/memlog-report.ts FILE [window seconds]')
const L = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line)
let start = 0
for (let i = 1; i < L.length; i++) if (L[i]!.t - L[i - 1]!.t > 3000 || L[i]!.t < L[i - 1]!.t) start = i
const S = L.slice(start)
const M = (x: number) => x / 1048576
const win = Number(process.argv[3] ?? 300)
/** Seconds since the server's first line. */
const sec = (x: Line) => (x.t - S[0]!.t) / 1000
const T = sec(S.at(-1)!)

console.log('samples', S.length, 'over', Math.round(T), 's; window', win, 's')
console.log('t(min)  rss(mean/min/max)  heapTotal(mean)  heapUsed(min)  heapUsed(mean)  external(mean)  anon  file  other=anon-heapTotal-external')
for (let a = 0; a + win <= T; a += win) {
  const w = S.filter((x) => sec(x) >= a && sec(x) < a + win)
  if (!w.length) continue
  const mean = (k: keyof Line) => w.reduce((a, x) => a + x[k], 0) / w.length
  const min = (k: keyof Line) => Math.min(...w.map((x) => x[k]))
  const max = (k: keyof Line) => Math.max(...w.map((x) => x[k]))
  const anon = mean('anonKb') / 1024
  console.log(
    ((a + win / 2) / 60).toFixed(1).padStart(5),
    `${M(mean('rss')).toFixed(1)}/${M(min('rss')).toFixed(0)}/${M(max('rss')).toFixed(0)}`.padStart(18),
    M(mean('heapTotal')).toFixed(1).padStart(10),
    M(min('heapUsed')).toFixed(1).padStart(10),
    M(mean('heapUsed')).toFixed(1).padStart(10),
    M(mean('external')).toFixed(1).padStart(10),
    anon.toFixed(1).padStart(7),
    (mean('fileKb') / 1024).toFixed(1).padStart(6),
    (anon - M(mean('heapTotal')) - M(mean('external'))).toFixed(1).padStart(7),
  )
}

// The soak's own statistic (bench/lib/drift.ts) for each part: over the plateau from PLATEAU_S, and over the second half.
const parts = {
  mib: (x: Line) => M(x.rss),
  heap: (x: Line) => M(x.heapTotal),
  other: (x: Line) => x.anonKb / 1024 - M(x.heapTotal) - M(x.external),
}
console.log('')
console.log('# least-squares slopes over 30-s batch means (MiB a minute, ± one standard error)')
for (const from of [T / 2, undefined]) {
  for (const [k, f] of Object.entries(parts)) {
    const d = plateauDrift(S.map((x) => ({ s: sec(x), mib: f(x) })), from)
    if (!d || d.seMibPerMin === undefined) continue
    console.log(`${k.padEnd(5)} ${Math.round(d.fromS)}-${Math.round(T)} s: ${d.mibPerMin >= 0 ? '+' : ''}${d.mibPerMin.toFixed(3)} ± ${d.seMibPerMin.toFixed(3)} MiB/min (${d.batches} batch means, residual sd ${d.sdMiB!.toFixed(2)} MiB)`)
  }
}
