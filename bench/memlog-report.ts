/**
 * Reads the lines bench/memlog.ts appended (the last server's: a gap of over 3 s starts a new one) and prints
 * the memory by part in windows of W seconds, then least-squares slopes of RSS, of the heap's space and of the
 * rest over 30-second batch means, for the second half and from 120 s on. Times are seconds since the server's
 * first line (its start), not since the bench's measured run began:
 * `bun bench/memlog-report.ts FILE [W]` (default 300). Not a test.
 *
 * "other" is the anonymous RSS less the heap's space (heapTotal) and the memory its objects hold outside it
 * (external): the runtime's own allocations (HTTP server, SQLite's page cache, JIT code, stacks, workers).
 */
import { readFileSync } from 'node:fs'

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

type Part = 'mib' | 'heap' | 'other'
const P = S.map((x) => ({ s: sec(x), mib: M(x.rss), heap: M(x.heapTotal), other: x.anonKb / 1024 - M(x.heapTotal) - M(x.external) }))
function fit(pts: { x: number; y: number }[]) {
  const n = pts.length
  const mx = pts.reduce((a, p) => a + p.x, 0) / n
  const my = pts.reduce((a, p) => a + p.y, 0) / n
  const sxx = pts.reduce((a, p) => a + (p.x - mx) ** 2, 0)
  const sxy = pts.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0)
  const b = sxy / sxx
  const res = pts.reduce((a, p) => a + (p.y - my - b * (p.x - mx)) ** 2, 0)
  return { slope: b, se: Math.sqrt(res / (n - 2) / sxx), sd: Math.sqrt(res / (n - 2)) }
}
function batches(from: number, to: number, len: number, k: Part) {
  const out: { x: number; y: number }[] = []
  for (let a = from; a + len <= to; a += len) {
    const w = P.filter((p) => p.s >= a && p.s < a + len)
    if (w.length) out.push({ x: (a + len / 2) / 60, y: w.reduce((s, p) => s + p[k], 0) / w.length })
  }
  return out
}
console.log('')
console.log('# least-squares slopes over 30-s batch means (MiB a minute, ± one standard error)')
for (const [from, to] of [[T / 2, T], [120, T]] as [number, number][]) {
  for (const k of ['mib', 'heap', 'other'] as const) {
    const b = batches(from, to, 30, k)
    if (b.length < 3) continue
    const f = fit(b)
    console.log(`${k.padEnd(5)} ${Math.round(from)}-${Math.round(to)} s: ${f.slope >= 0 ? '+' : ''}${f.slope.toFixed(3)} ± ${f.se.toFixed(3)} MiB/min (batch-mean residual sd ${f.sd.toFixed(2)} MiB)`)
  }
}
