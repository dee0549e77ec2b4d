/**
 * `bulwark audit verify` and `bulwark audit export`: the audit trail's tamper check and its NDJSON export,
 * run against the configured database (a running server may keep serving meanwhile: WAL readers do not
 * block it). Exit codes: 0 done and intact, 4 a chain is broken, 1 no database, 3 schema too new, 64 usage.
 */
import { existsSync } from 'node:fs'
import type { Config } from '../config'
import { openDatabase } from '../db/client'
import { SchemaTooNewError } from '../db/migrate'
import { parseHead, verifyChains, type ExpectedHead, type VerifyReport } from '../modules/audit/chain'
import { exportChunks, parseInstant } from '../modules/audit/export'

export const AUDIT_BROKEN_EXIT = 4

const HELP = `Usage: bulwark audit <verify|export> [options]

  verify [--json] [--head CHAIN:POSITION:HASH]...
                     check every hash chain of the security events; prints each chain's head
                     (store it outside Bulwark) or the first broken link. Each --head is a head
                     printed earlier: it must still be there with the same hash (unless pruned).
                     Exit 0 intact, 4 broken.
  export [--since ISO] [--until ISO] [--type TYPE] [--output FILE]
                     write the events as NDJSON (oldest first, with chainId, seq, prevHash, hash)
                     to stdout or FILE; since/until are inclusive ISO 8601 dates or date-times.
`

const err = (line: string) => process.stderr.write(`bulwark: ${line}\n`)

/** Runs `bulwark audit …` (argv after `audit`); resolves to the exit code. */
export async function auditCommand(argv: string[], loadConfig: () => Config): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help' || rest.includes('--help') || rest.includes('-h')) {
    process[sub === undefined ? 'stderr' : 'stdout'].write(HELP)
    return sub === undefined ? 64 : 0
  }
  if (sub !== 'verify' && sub !== 'export') {
    err(`unknown command "audit ${sub}"`)
    process.stderr.write(HELP)
    return 64
  }
  const opts = parseOptions(rest, sub === 'verify' ? ['--json', '--head'] : ['--since', '--until', '--type', '--output'])
  if (typeof opts === 'string') {
    err(opts)
    return 64
  }
  const heads = (opts.heads ?? []).map(parseHead)
  if (heads.some((h) => h === undefined)) {
    err('--head takes CHAIN:POSITION:HASH as `bulwark audit verify` prints it')
    return 64
  }
  const config = loadConfig()
  if (config.dbPath !== ':memory:' && !existsSync(config.dbPath)) {
    err(`no database at ${config.dbPath} (set BULWARK_DATA_DIR or BULWARK_DB_PATH)`)
    return 1
  }
  let handle
  try {
    handle = openDatabase(config.dbPath)
  } catch (e) {
    if (e instanceof SchemaTooNewError) {
      err(e.message)
      return 3
    }
    throw e
  }
  try {
    return sub === 'verify' ? await verify(handle.sqlite, opts['--json'] !== undefined, heads as ExpectedHead[]) : await exportTo(handle.sqlite, opts)
  } finally {
    handle.close()
  }
}

async function verify(sqlite: Parameters<typeof verifyChains>[0], json: boolean, heads: ExpectedHead[]): Promise<number> {
  const report = await verifyChains(sqlite, { heads })
  process.stdout.write(json ? `${JSON.stringify(report)}\n` : describe(report))
  return report.intact ? 0 : AUDIT_BROKEN_EXIT
}

/** The human form of a report: the verdict, then one line per chain head. */
export function describe(r: VerifyReport): string {
  const lines: string[] = []
  if (r.firstBroken) {
    const b = r.firstBroken
    lines.push(`audit trail BROKEN: chain ${b.chainId ?? '(none)'}, event ${b.eventId ?? '(gone)'}, position ${b.position ?? '-'}: ${b.reason}: ${b.detail}`)
  } else {
    lines.push(`audit trail intact: ${r.events} events in ${r.chains.length} chain${r.chains.length === 1 ? '' : 's'}${r.unchainedEvents ? `; ${r.unchainedEvents} older events predate hash chaining` : ''}`)
    for (const c of r.chains) {
      lines.push(`head ${c.chainId}:${c.headPosition}:${c.headHash} (event ${c.headEventId} at ${c.headCreatedAt}; positions ${c.firstPosition}-${c.headPosition}${c.pruned ? ', older pruned' : ''})`)
    }
  }
  return `${lines.join('\n')}\n`
}

async function exportTo(sqlite: Parameters<typeof exportChunks>[0], opts: Record<string, string>): Promise<number> {
  const since = opts['--since'] === undefined ? undefined : parseInstant(opts['--since'])
  const until = opts['--until'] === undefined ? undefined : parseInstant(opts['--until'])
  if (Number.isNaN(since) || Number.isNaN(until)) {
    err('--since and --until take an ISO 8601 date or date-time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z')
    return 64
  }
  const type = opts['--type']
  if (type !== undefined && !/^[a-z_]{1,64}$/.test(type)) {
    err('--type takes an event type such as login_failed')
    return 64
  }
  const sink = opts['--output'] ? Bun.file(opts['--output']).writer() : Bun.stdout.writer()
  for (const chunk of exportChunks(sqlite, { since, until, type })) {
    sink.write(chunk)
    await sink.flush()
  }
  await sink.end()
  return 0
}

/** `--name value` pairs (and bare flags; `--head` repeatable into `heads`) from the allowed set; a string is the usage problem. */
function parseOptions(args: string[], allowed: string[]): (Record<string, string> & { heads?: string[] }) | string {
  const out: Record<string, string> & { heads?: string[] } = {}
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (!allowed.includes(a)) return `unknown option "${a}"; try \`bulwark audit --help\``
    if (a === '--json') {
      out[a] = ''
      continue
    }
    const v = args[++i]
    if (v === undefined) return `${a} needs a value`
    if (a === '--head') (out.heads ??= []).push(v)
    else out[a] = v
  }
  return out
}
