/**
 * The SIEM export: security events as NDJSON (one JSON object per line, `application/x-ndjson`), oldest
 * first, filtered by time and type. Rows are read in keyset batches in index order, (created_at, id) on
 * `security_events_created` or (type, created_at, id) on `security_events_type_created`, so an export of
 * any size holds one batch in memory and never sorts. Each line is the event's canonical object
 * (src/modules/audit/chain.ts) plus `id`, `prevHash` and `hash`, so the receiver can re-check the chain.
 */
import type { Database } from 'bun:sqlite'
import { canonicalObject, fieldsOfRow, type StoredRow } from './chain'

export interface ExportFilter {
  /** Inclusive lower bound, epoch ms. */
  since?: number
  /** Inclusive upper bound, epoch ms. */
  until?: number
  type?: string
  batchSize?: number
}

/** An ISO 8601 date or date-time as epoch ms; NaN when it is not one. */
export function parseInstant(value: string): number {
  return /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : Number.NaN
}

/** One export line (without the trailing newline). */
export function exportLine(r: StoredRow): string {
  const fields = fieldsOfRow(r)
  const body = canonicalObject(fields ?? fieldsOfRow({ ...r, details: null })!)
  // Details that are no longer JSON (changed in the database) are shown as the stored text.
  if (!fields) body.details = r.details
  if (r.chain_id === null) {
    body.chainId = null
    body.seq = null
  }
  return JSON.stringify({ id: r.id, ...body, prevHash: r.prev_hash, hash: r.hash })
}

/** NDJSON chunks (one per batch, each ending in a newline), oldest event first. */
export function* exportChunks(sqlite: Database, filter: ExportFilter): Generator<string, void, undefined> {
  const batch = filter.batchSize ?? 500
  const until = filter.until ?? Number.MAX_SAFE_INTEGER
  const byType = sqlite.query<StoredRow, [string, number, number, number, number]>(
    'SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at FROM security_events WHERE type = ? AND (created_at, id) > (?, ?) AND created_at <= ? ORDER BY type, created_at, id LIMIT ?',
  )
  const all = sqlite.query<StoredRow, [number, number, number, number]>(
    'SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at FROM security_events WHERE (created_at, id) > (?, ?) AND created_at <= ? ORDER BY created_at, id LIMIT ?',
  )
  // (created_at, id) > (since, -1) is created_at >= since.
  let at = filter.since ?? Number.MIN_SAFE_INTEGER
  let id = -1
  for (;;) {
    const rows = filter.type === undefined ? all.all(at, id, until, batch) : byType.all(filter.type, at, id, until, batch)
    if (rows.length === 0) return
    let chunk = ''
    for (const r of rows) chunk += `${exportLine(r)}\n`
    const last = rows.at(-1)!
    at = last.created_at
    id = last.id
    yield chunk
    if (rows.length < batch) return
  }
}

/** The export as a byte stream: each pull reads one batch, so a slow reader holds the database to one batch. */
export function exportStream(chunks: Generator<string, void, undefined>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder()
  return new ReadableStream<Uint8Array>({
    pull: (controller) => {
      const n = chunks.next()
      if (n.done) controller.close()
      else controller.enqueue(encoder.encode(n.value))
    },
    cancel: () => {
      chunks.return(undefined)
    },
  })
}
