/**
 * The SIEM export: security events as NDJSON (one JSON object per line, `application/x-ndjson`), oldest
 * first, filtered by time and type. Rows are read in keyset batches in index order, (created_at, id) on
 * `security_events_created` or (type, created_at, id) on `security_events_type_created`, so an export of
 * any size holds one batch in memory and never sorts. Each line is the event's canonical object
 * (src/modules/audit/chain.ts) plus `id`, `prevHash` and `hash`, so the receiver can re-check the chain.
 */
import { Database } from 'bun:sqlite'
import { canonicalObject, fieldsOfRow, rowOf, type AuditSource, type StoredRow } from './chain'

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

/** NDJSON chunks (one per batch, each ending in a newline), oldest event first. Each batch is its own
 * indexed keyset query, so nothing is held open between pulls (new events only ever sort after the cursor). */
export async function* exportChunks(source: AuditSource, filter: ExportFilter): AsyncGenerator<string, void, undefined> {
  const batch = filter.batchSize ?? 500
  const until = filter.until ?? Number.MAX_SAFE_INTEGER
  let read: (at: number, id: number) => Promise<StoredRow[]>
  if (source instanceof Database) {
    const byType = source.query<StoredRow, [string, number, number, number, number]>(
      'SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at FROM security_events WHERE type = ? AND (created_at, id) > (?, ?) AND created_at <= ? ORDER BY type, created_at, id LIMIT ?',
    )
    const all = source.query<StoredRow, [number, number, number, number]>(
      'SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at FROM security_events WHERE (created_at, id) > (?, ?) AND created_at <= ? ORDER BY created_at, id LIMIT ?',
    )
    read = async (at, id) => (filter.type === undefined ? all.all(at, id, until, batch) : byType.all(filter.type, at, id, until, batch))
  } else {
    const pg = source.pg
    read = async (at, id) => {
      const rows = (
        filter.type === undefined
          ? await pg.unsafe(
              'SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details::text AS details, created_at FROM security_events WHERE (created_at, id) > ($1, $2) AND created_at <= $3 ORDER BY created_at, id LIMIT $4',
              [at, id, until, batch],
            )
          : await pg.unsafe(
              'SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details::text AS details, created_at FROM security_events WHERE type = $1 AND (created_at, id) > ($2, $3) AND created_at <= $4 ORDER BY type, created_at, id LIMIT $5',
              [filter.type, at, id, until, batch],
            )
      ) as Record<string, unknown>[]
      return rows.map(rowOf)
    }
  }
  // (created_at, id) > (since, -1) is created_at >= since.
  let at = filter.since ?? Number.MIN_SAFE_INTEGER
  let id = -1
  for (;;) {
    const rows = await read(at, id)
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
export function exportStream(chunks: AsyncGenerator<string, void, undefined>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder()
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      const n = await chunks.next()
      if (n.done) controller.close()
      else controller.enqueue(encoder.encode(n.value))
    },
    cancel: async () => {
      await chunks.return(undefined)
    },
  })
}
