/** Command-line flags of `bun run bench`. */

export type Mode = 'standard' | 'soak' | 'scale' | 'profile'
/** `sqlite` (default), `postgres` or `both`; see USAGE for what each mode runs. */
export type DbChoice = 'sqlite' | 'postgres' | 'both'

/** The server on which PostgreSQL runs create (and drop) their `bw_bench_<random>` database. */
export const DEFAULT_PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres'

export interface BenchArgs {
  mode: Mode
  users: number
  /** Seconds measured per scenario. */
  duration: number
  /** Seconds of warm-up per scenario (not measured). */
  warmup: number
  connections: number
  /** Scenario names to run (empty: all of the mode). */
  only: string[]
  quick: boolean
  /** Free text written into the results file (e.g. "quiet machine"). */
  note: string
  logLevel: string
  save: boolean
  /** Print each scenario's server CPU per request split by thread name. */
  threads: boolean
  /** --soak --heap: the server runs from source under `bun --heap-prof-md`; the heap's largest types at the end are printed. */
  heap: boolean
  db: DbChoice
  /** A URL naming an existing database on the PostgreSQL server the bench may create databases on. */
  pgUrl: string
}

export const SCENARIOS = ['me', 'users', 'authz', 'login', 'refresh', 'storm', 'startup'] as const

const USAGE = `bun run bench [flags]

  --users N          users in the database (default 1000; up to 1000000)
  --duration S       seconds measured per scenario (default 10; warm-up 3)
  --warmup S         seconds of warm-up per scenario (default 3)
  --connections C    concurrent connections of the load generator (default 64)
  --only a,b         run only these scenarios: ${SCENARIOS.join(', ')}
  --quick            smoke run: 1000 users, 3 s per scenario, 1 s warm-up
  --soak             memory: 100000 users, a 60-second mixed run, server RSS after it and the RSS drift
                     (slope from 120 s, or of the second half of runs under 4 min; judged against 0.5 MiB a minute
                     with --duration 600 or more)
  --scale            scale: login, /v1/me and user-list page 1 vs page 5000 at 1000 and 1000000 users
  --profile          CPU profile of GET /v1/me: runs src/index.ts under \`bun --cpu-prof\`, prints the top costs
  --db sqlite|postgres|both
                     the server's database (default sqlite). Standard run: postgres and both run every
                     scenario on SQLite AND PostgreSQL in the same run, side by side (a comparison is only
                     meaningful within one run); --scale: postgres runs the scale check on PostgreSQL only,
                     both on each engine; --soak, --profile: postgres runs on PostgreSQL (both is refused)
  --pg-url URL       PostgreSQL server for --db (default $BENCH_PG_URL or ${DEFAULT_PG_ADMIN_URL});
                     each run creates a fresh database bw_bench_<random> there and drops it at the end
  --note TEXT        a remark saved with the results (e.g. "quiet machine")
  --log-level L      server log level (default info, as in production)
  --no-save          print only; write nothing to bench/results/
  --heap             with --soak: run the server from source under bun --heap-prof-md and print the heap's
                     largest types after the run (the .md is saved to dist/bench-heap.md)
  --threads          also print each scenario's server CPU per request by thread (main, pool, GC, HTTP)
`

function int(name: string, raw: string | undefined, min: number, max: number): number {
  const n = Number(raw)
  if (!raw || !Number.isInteger(n) || n < min || n > max) throw new Error(`${name} needs an integer between ${min} and ${max}`)
  return n
}

/** Parses argv; exits with the usage text on --help or a bad flag. */
export function parseArgs(argv: string[]): BenchArgs {
  const a: BenchArgs = {
    mode: 'standard',
    users: 1000,
    duration: 10,
    warmup: 3,
    connections: 64,
    only: [],
    quick: false,
    note: '',
    logLevel: 'info',
    save: true,
    threads: false,
    heap: false,
    db: 'sqlite',
    pgUrl: process.env.BENCH_PG_URL || DEFAULT_PG_ADMIN_URL,
  }
  let usersGiven = false
  let durationGiven = false
  let warmupGiven = false
  try {
    for (let i = 0; i < argv.length; i++) {
      const f = argv[i]!
      const next = () => argv[++i]
      switch (f) {
        case '--users':
          a.users = int(f, next(), 20, 1_000_000)
          usersGiven = true
          break
        case '--duration':
          a.duration = int(f, next(), 1, 3600)
          durationGiven = true
          break
        case '--warmup':
          a.warmup = int(f, next(), 0, 600)
          warmupGiven = true
          break
        case '--connections':
          a.connections = int(f, next(), 1, 10_000)
          break
        case '--only': {
          a.only = (next() ?? '').split(',').map((s) => s.trim()).filter(Boolean)
          const bad = a.only.filter((s) => !(SCENARIOS as readonly string[]).includes(s))
          if (bad.length) throw new Error(`unknown scenario ${bad.join(', ')}`)
          break
        }
        case '--quick':
          a.quick = true
          break
        case '--soak':
          a.mode = 'soak'
          break
        case '--scale':
          a.mode = 'scale'
          break
        case '--profile':
          a.mode = 'profile'
          break
        case '--note':
          a.note = next() ?? ''
          break
        case '--log-level':
          a.logLevel = next() ?? 'info'
          break
        case '--db': {
          const d = next()
          if (d !== 'sqlite' && d !== 'postgres' && d !== 'both') throw new Error('--db needs sqlite, postgres or both')
          a.db = d
          break
        }
        case '--pg-url': {
          const u = next() ?? ''
          if (!/^postgres(ql)?:\/\/[^/]/.test(u)) throw new Error('--pg-url needs a postgres:// URL')
          a.pgUrl = u
          break
        }
        case '--no-save':
          a.save = false
          break
        case '--threads':
          a.threads = true
          break
        case '--heap':
          a.heap = true
          break
        case '-h':
        case '--help':
          process.stdout.write(USAGE)
          process.exit(0)
        // falls through (exit does not return)
        default:
          throw new Error(`unknown flag ${f}`)
      }
    }
    if (a.db === 'both' && (a.mode === 'soak' || a.mode === 'profile')) throw new Error(`--db both is not available with --${a.mode}: run it once per engine`)
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n\n${USAGE}`)
    process.exit(64)
  }
  if (a.quick) {
    if (!usersGiven) a.users = 1000
    if (!durationGiven) a.duration = 3
    if (!warmupGiven) a.warmup = 1
  }
  if (a.mode === 'soak') {
    if (!usersGiven) a.users = 100_000
    if (!durationGiven) a.duration = a.quick ? 10 : 60
  }
  if (a.mode === 'scale' && !usersGiven) a.users = a.quick ? 200_000 : 1_000_000
  return a
}
