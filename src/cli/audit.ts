/**
 * `bulwark audit verify` and `bulwark audit export`: the audit trail's tamper check and its NDJSON export,
 * run against the configured database (a running server may keep serving meanwhile: WAL readers do not
 * block it). Exit codes: 0 done and intact, 4 a chain is broken, 1 no database, 3 schema too new, 64 usage.
 */
import { existsSync } from 'node:fs'
import { usageError, type Command } from './command'
import { configOrExit } from './config-or-exit'
import { openStore } from '../db/client'
import { SchemaTooNewError } from '../db/migrate'
import { parseHead, verifyChains, type AuditSource, type ExpectedHead, type VerifyReport } from '../modules/audit/chain'
import { exportChunks, parseInstant } from '../modules/audit/export'

export const AUDIT_BROKEN_EXIT = 4

const err = (line: string) => process.stderr.write(`bulwark: ${line}\n`)

export const auditVerifyCommand: Command = {
  name: 'audit verify',
  summary: "check the audit trail's hash chains (exit 4 when broken)",
  details:
    "Checks every hash chain of the security events and prints each chain's head (store it outside Bulwark)\n" +
    'or the first broken link. Each --head is a head printed earlier: it must still be there with the same\n' +
    'hash (unless pruned). Exit codes: 0 intact, 4 broken, 1 no database, 3 schema too new, 64 usage.',
  flags: [
    { name: 'json', doc: 'print the report as one JSON object' },
    { name: 'head', value: 'CHAIN:POSITION:HASH', repeatable: true, doc: 'a chain head printed by an earlier verify (repeatable)' },
  ],
  run: async ({ flags, lists }) => {
    const heads = (lists.head ?? []).map(parseHead)
    if (heads.some((h) => h === undefined)) throw usageError('--head takes CHAIN:POSITION:HASH as `bulwark audit verify` prints it')
    return withDatabase((source) => verify(source, flags.json === true, heads as ExpectedHead[]))
  },
}

export const auditExportCommand: Command = {
  name: 'audit export',
  summary: 'write the security events as NDJSON (oldest first, with their hash-chain fields)',
  details: 'since/until are inclusive ISO 8601 dates or date-times. Exit codes: 0 done, 1 no database, 3 schema too new, 64 usage.',
  flags: [
    { name: 'since', value: 'ISO', doc: 'first instant (inclusive)' },
    { name: 'until', value: 'ISO', doc: 'last instant (inclusive)' },
    { name: 'type', value: 'TYPE', doc: 'only events of this type, e.g. login_failed' },
    { name: 'output', value: 'FILE', doc: 'write to FILE instead of stdout' },
  ],
  run: ({ flags }) => {
    const opts: Record<string, string> = {}
    for (const k of ['since', 'until', 'type', 'output']) if (typeof flags[k] === 'string') opts[`--${k}`] = flags[k] as string
    return withDatabase((source) => exportTo(source, opts))
  },
}

/** Opens the configured database (never creating an SQLite file; PostgreSQL when BULWARK_DATABASE_URL is set). */
async function withDatabase(run: (source: AuditSource) => Promise<number>): Promise<number> {
  const config = configOrExit()
  if (!config.pg && config.dbPath !== ':memory:' && !existsSync(config.dbPath)) {
    err(`no database at ${config.dbPath} (set BULWARK_DATA_DIR or BULWARK_DB_PATH)`)
    return 1
  }
  let store
  try {
    store = await openStore(config)
  } catch (e) {
    if (e instanceof SchemaTooNewError) {
      err(e.message)
      return 3
    }
    throw e
  }
  try {
    return await run(store.sqlite ?? { pg: store.pg! })
  } finally {
    await store.close()
  }
}

async function verify(source: AuditSource, json: boolean, heads: ExpectedHead[]): Promise<number> {
  const report = await verifyChains(source, { heads })
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

async function exportTo(source: AuditSource, opts: Record<string, string>): Promise<number> {
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
  for await (const chunk of exportChunks(source, { since, until, type })) {
    sink.write(chunk)
    await sink.flush()
  }
  await sink.end()
  return 0
}
