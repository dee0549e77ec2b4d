/** The results table, the target verdicts and the Markdown file in bench/results/. */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BenchArgs } from './args'
import type { Machine } from './machine'

export interface Row {
  scenario: string
  rps?: number
  p50Ms?: number
  p99Ms?: number
  errors?: number
  rssMiB?: number
  /** Server CPU (user + system) per request over the measured run, µs. */
  cpuUs?: number
  /** PostgreSQL runs: CPU of the database's backends per request over the measured run, µs. */
  dbCpuUs?: number
  /** Why there is no figure ("n/a (route missing)") or a remark. */
  note?: string
}

export interface Verdict {
  target: string
  measured: string
  /** UNSETTLED: the figure's uncertainty straddles the limit (a longer run could tell). */
  verdict: 'PASS' | 'MISS' | 'UNSETTLED' | 'n/a'
}

const num = (n: number | undefined, digits = 0) => (n === undefined || !Number.isFinite(n) ? '-' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }))
const ms = (n: number | undefined) => (n === undefined ? '-' : n < 10 ? `${n.toFixed(2)} ms` : `${n.toFixed(1)} ms`)

function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`
  return [line(header), `|${w.map((x) => '-'.repeat(x + 2)).join('|')}|`, ...rows.map(line)].join('\n')
}

export function resultsTable(rows: Row[]): string {
  // The database CPU column only when some row has one (PostgreSQL runs): SQLite works inside the server process.
  const db = rows.some((r) => r.dbCpuUs !== undefined)
  const us = (n: number | undefined) => (n === undefined ? '-' : `${num(n, 0)} µs`)
  return table(
    ['scenario', 'req/s', 'p50', 'p99', 'errors', 'server CPU/req', ...(db ? ['db CPU/req'] : []), 'server RSS', 'note'],
    rows.map((r) =>
      r.rps === undefined
        ? [r.scenario, '-', '-', '-', '-', '-', ...(db ? ['-'] : []), r.rssMiB === undefined ? '-' : `${num(r.rssMiB, 1)} MiB`, r.note ?? 'n/a']
        : [r.scenario, num(r.rps, r.rps < 100 ? 1 : 0), ms(r.p50Ms), ms(r.p99Ms), num(r.errors), us(r.cpuUs), ...(db ? [us(r.dbCpuUs)] : []), r.rssMiB === undefined ? '-' : `${num(r.rssMiB, 1)} MiB`, r.note ?? ''],
    ),
  )
}

/**
 * One line per scenario with the SQLite and PostgreSQL figures next to each other (from the same run) and
 * PostgreSQL's throughput as a share of SQLite's.
 */
export function engineTable(pairs: { scenario: string; sqlite?: Row; postgres?: Row }[]): string {
  const rps = (r: Row | undefined) => (r?.rps === undefined ? (r?.note ?? '-') : num(r.rps, r.rps < 100 ? 1 : 0))
  const us = (n: number | undefined) => (n === undefined ? '-' : `${num(n, 0)} µs`)
  return table(
    ['scenario', 'SQLite req/s', 'PostgreSQL req/s', 'PG / SQLite', 'SQLite p99', 'PG p99', 'SQLite server CPU/req', 'PG server CPU/req', 'PG backends CPU/req'],
    pairs.map(({ scenario, sqlite: a, postgres: b }) => [
      scenario,
      rps(a),
      rps(b),
      a?.rps && b?.rps !== undefined ? `${(b.rps / a.rps).toFixed(2)}x` : '-',
      ms(a?.p99Ms),
      ms(b?.p99Ms),
      us(a?.cpuUs),
      us(b?.cpuUs),
      us(b?.dbCpuUs),
    ]),
  )
}

export function verdictTable(v: Verdict[]): string {
  return table(['target', 'measured', 'verdict'], v.map((x) => [x.target, x.measured, x.verdict]))
}

/** `measured >= limit` style verdict; n/a when a figure is missing. */
export function atLeast(target: string, value: number | undefined, limit: number | undefined, describe: (v: number, l: number) => string): Verdict {
  if (value === undefined || limit === undefined || !Number.isFinite(value) || !Number.isFinite(limit)) return { target, measured: 'n/a (not measured)', verdict: 'n/a' }
  return { target, measured: describe(value, limit), verdict: value >= limit ? 'PASS' : 'MISS' }
}

/** `measured <= limit` style verdict; n/a when a figure is missing. */
export function atMost(target: string, value: number | undefined, limit: number | undefined, describe: (v: number, l: number) => string): Verdict {
  if (value === undefined || limit === undefined || !Number.isFinite(value) || !Number.isFinite(limit)) return { target, measured: 'n/a (not measured)', verdict: 'n/a' }
  return { target, measured: describe(value, limit), verdict: value <= limit ? 'PASS' : 'MISS' }
}

export function below(target: string, value: number | undefined, limit: number, unit: string): Verdict {
  if (value === undefined || !Number.isFinite(value)) return { target, measured: 'n/a (not measured)', verdict: 'n/a' }
  return { target, measured: `${value.toFixed(value < 10 ? 2 : 1)} ${unit}`, verdict: value < limit ? 'PASS' : 'MISS' }
}

/** Writes bench/results/<date>-<mode>.md (<date>-postgres.md, <date>-postgres-<mode>.md… with --db; a suffix when that name is taken); returns the path. */
export function saveResults(dir: string, a: BenchArgs, m: Machine, body: string, started: Date): string {
  mkdirSync(dir, { recursive: true })
  const date = started.toISOString().slice(0, 10)
  const engine = a.db === 'sqlite' ? '' : `${a.db}${a.mode === 'standard' ? '' : '-'}`
  const base = `${date}-${engine}${engine && a.mode === 'standard' ? '' : a.mode}${a.quick ? '-quick' : ''}`
  let file = join(dir, `${base}.md`)
  for (let i = 2; existsSync(file); i++) file = join(dir, `${base}-${i}.md`)
  const argv = process.argv.slice(2).filter((x, i, all) => x !== '--note' && all[i - 1] !== '--note')
  const flags = `mode ${a.mode}, database ${a.db}, ${a.users.toLocaleString('en-US')} users, ${a.duration} s per scenario after ${a.warmup} s warm-up, ${a.connections} connections${a.only.length ? `, only ${a.only.join(',')}` : ''}`
  const text = [
    `# Bulwark bench: ${started.toISOString()}`,
    '',
    a.note ? `**Note:** ${a.note}\n` : '',
    `- machine: ${m.nproc} cores, ${m.cpu}, ${m.memory} memory, kernel ${m.kernel}; load average at start ${m.load}`,
    `- bun ${m.bun}; server pinned to core 0 (taskset), wrk pinned to core 1`,
    `- run: ${flags}`,
    `- reproduce: \`bun run bench${argv.length ? ` ${argv.join(' ')}` : ''}\``,
    '',
    body,
    '',
  ].join('\n')
  writeFileSync(file, text)
  return file
}
