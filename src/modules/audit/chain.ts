/**
 * Tamper evidence for the audit trail: every security event carries `hash = SHA-256(prev_hash ‖ canonical
 * JSON of its stored fields)`, chained to the previous event of the same chain.
 *
 * - One chain per process start (`chain_id`, a UUIDv7 taken at the first event a process records), so
 *   several instances on one database never contend for one chain head, and appending costs one indexed
 *   lookup of this chain's head plus one hash.
 * - `seq` is the position in the chain (1, 2, …); the first event's `prev_hash` is 64 zeros (GENESIS).
 * - Canonical form (version 1): the JSON Canonicalization Scheme (RFC 8785) of the object
 *   `{actorId, chainId, createdAt, details, ip, outcome, requestId, seq, targetId, type, userAgent}`:
 *   keys sorted by UTF-16 code units, no whitespace, absent values as `null`, `createdAt` as the ISO 8601
 *   UTC string (`2026-01-01T00:00:00.000Z`), `details` as the stored JSON value. The digest is the
 *   lower-case hex SHA-256 of the UTF-8 bytes of `prev_hash` (64 hex characters) followed by that JSON.
 *   An exported NDJSON line minus `id`, `prevHash` and `hash` is exactly that object, so anyone can
 *   re-check an export with any RFC 8785 library and SHA-256.
 * - Pruning from the old end is not tampering: a chain may start at any position, and verification trusts
 *   the `prev_hash` of the oldest remaining event of each chain. The price: deleting the oldest events of
 *   a chain, deleting whole chains, and deleting the newest events of a chain are not detectable from the
 *   database alone; comparing the chain heads stored outside (verify and export print them) is.
 */
import { Database } from 'bun:sqlite'
import type { SQL } from 'bun'

export const GENESIS = '0'.repeat(64)
export const CANONICAL_VERSION = 1

/** The stored fields an event's hash covers. */
export interface ChainedFields {
  chainId: string
  seq: number
  type: string
  outcome: string
  actorId: string | null
  targetId: string | null
  ip: string | null
  userAgent: string | null
  requestId: string | null
  details: Record<string, unknown> | null
  /** Epoch milliseconds, as stored. */
  createdAt: number
}

/** RFC 8785 (JCS) serialisation of a JSON value: sorted keys, no whitespace, ECMAScript number and string forms. */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value)
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('non-finite numbers have no JSON form')
      return JSON.stringify(value)
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`
      const obj = value as Record<string, unknown>
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort()
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`
    }
    default:
      throw new TypeError(`${typeof value} has no JSON form`)
  }
}

/** The canonical object of an event (what an exported line is without `id`, `prevHash` and `hash`). */
export function canonicalObject(f: ChainedFields): Record<string, unknown> {
  return {
    actorId: f.actorId,
    chainId: f.chainId,
    createdAt: new Date(f.createdAt).toISOString(),
    details: f.details,
    ip: f.ip,
    outcome: f.outcome,
    requestId: f.requestId,
    seq: f.seq,
    targetId: f.targetId,
    type: f.type,
    userAgent: f.userAgent,
  }
}

const jsonOrNull = (v: string | null) => (v === null ? 'null' : JSON.stringify(v))

/**
 * `canonicalJson(canonicalObject(f))`, written out: the event's keys are fixed and already in sorted order,
 * so only `details` needs the general walk (test/modules/audit-chain.test.ts checks they are equal).
 */
export function canonicalEventJson(f: ChainedFields): string {
  return `{"actorId":${jsonOrNull(f.actorId)},"chainId":${JSON.stringify(f.chainId)},"createdAt":"${new Date(f.createdAt).toISOString()}","details":${f.details === null ? 'null' : canonicalJson(f.details)},"ip":${jsonOrNull(f.ip)},"outcome":${JSON.stringify(f.outcome)},"requestId":${jsonOrNull(f.requestId)},"seq":${canonicalJson(f.seq)},"targetId":${jsonOrNull(f.targetId)},"type":${JSON.stringify(f.type)},"userAgent":${jsonOrNull(f.userAgent)}}`
}

/** `hex(SHA-256(prevHash ‖ canonical JSON))`. */
export function chainHash(prevHash: string, f: ChainedFields): string {
  return new Bun.CryptoHasher('sha256').update(prevHash).update(canonicalEventJson(f)).digest('hex')
}

/**
 * `details` as it will be read back from its JSON column (undefined members dropped, dates as strings…),
 * which is what gets hashed. An object of strings, booleans, finite numbers and nulls reads back as itself,
 * so it is used as it is; anything else takes the JSON round trip.
 */
export function asStoredJson(details: Record<string, unknown>): Record<string, unknown> {
  for (const k in details) {
    const v = details[k]
    if (v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) continue
    return JSON.parse(JSON.stringify(details)) as Record<string, unknown>
  }
  return Object.getPrototypeOf(details) === Object.prototype ? details : (JSON.parse(JSON.stringify(details)) as Record<string, unknown>)
}

/** One row as stored (snake_case columns, details as JSON text). */
export interface StoredRow {
  id: number
  chain_id: string | null
  seq: number | null
  prev_hash: string | null
  hash: string | null
  type: string
  outcome: string
  actor_id: string | null
  target_id: string | null
  ip: string | null
  user_agent: string | null
  request_id: string | null
  details: string | null
  created_at: number
}

/** The hashed fields of a stored row; undefined when the stored details are not JSON (tampered). */
export function fieldsOfRow(r: StoredRow): ChainedFields | undefined {
  let details: Record<string, unknown> | null = null
  if (r.details !== null) {
    try {
      details = JSON.parse(r.details) as Record<string, unknown>
    } catch {
      return undefined
    }
  }
  return {
    chainId: r.chain_id ?? '',
    seq: r.seq ?? 0,
    type: r.type,
    outcome: r.outcome,
    actorId: r.actor_id,
    targetId: r.target_id,
    ip: r.ip,
    userAgent: r.user_agent,
    requestId: r.request_id,
    details,
    createdAt: r.created_at,
  }
}

export type BreakReason = 'hash_mismatch' | 'prev_hash_mismatch' | 'missing_events' | 'out_of_order' | 'unchained_event' | 'head_mismatch' | 'head_missing'

/** The first link that does not hold. */
export interface BrokenLink {
  chainId: string | null
  /** The event at the broken link; null for a stored head whose event no longer exists. */
  eventId: number | null
  position: number | null
  reason: BreakReason
  detail: string
}

/** What remains of one chain: its first remaining position and its head (the value to store elsewhere). */
export interface ChainHead {
  chainId: string
  firstPosition: number
  /** True when the chain's first remaining event is not position 1 (older events were pruned). */
  pruned: boolean
  headPosition: number
  headEventId: number
  headHash: string
  headCreatedAt: string
  events: number
}

/** A chain head stored outside Bulwark earlier (`chainId:position:hash`, as verify prints it). */
export interface ExpectedHead {
  chainId: string
  position: number
  hash: string
}

/** Parses `chainId:position:hash`; undefined when malformed. */
export function parseHead(s: string): ExpectedHead | undefined {
  const m = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(\d{1,15}):([0-9a-f]{64})$/.exec(s.trim())
  return m ? { chainId: m[1]!, position: Number(m[2]), hash: m[3]! } : undefined
}

export interface VerifyReport {
  intact: boolean
  /** Events checked (all chained events when intact). */
  events: number
  /** Events written before hash chaining began (not covered). */
  unchainedEvents: number
  chains: ChainHead[]
  firstBroken: BrokenLink | null
}

interface Walk {
  head: ChainHead
  lastHash: string
}

const isFileDb = (sqlite: Database) => sqlite.filename !== '' && sqlite.filename !== ':memory:' && !sqlite.filename.startsWith('file::memory:')

/** Where the trail is read: the SQLite connection, or the PostgreSQL pool. */
export type AuditSource = Database | { pg: SQL }


/** The reads of a walk, over one snapshot. */
interface WalkRows {
  first(limit: number): Promise<StoredRow[]>
  next(chainId: string, seq: number, limit: number): Promise<StoredRow[]>
  firstChainedId(): Promise<number | null>
  strayAfter(id: number): Promise<StoredRow | undefined>
  at(chainId: string, seq: number): Promise<{ id: number; hash: string | null } | undefined>
  unchained(): Promise<number>
  /** Between batches: lets other work run. */
  pause(): Promise<void>
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v))
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v))

/** A PostgreSQL row (bigint columns arrive as strings) in the stored-row shape. */
export function rowOf(r: Record<string, unknown>): StoredRow {
  return { ...(r as unknown as StoredRow), id: num(r.id), seq: numOrNull(r.seq), created_at: num(r.created_at) }
}

/** Runs `fn` over one consistent snapshot of the trail, never blocking writers. */
async function withSnapshot<T>(source: AuditSource, fn: (rows: WalkRows) => Promise<T>): Promise<T> {
  if (!(source instanceof Database)) {
    // One REPEATABLE READ, READ ONLY transaction: every batch sees the trail as it was at the first read.
    return source.pg.begin('isolation level repeatable read read only', async (tx) => {
      const q = async (text: string, params: unknown[]) => ((await tx.unsafe(text, params)) as Record<string, unknown>[]).map(rowOf)
      return fn({
        first: (limit) => q('SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details::text AS details, created_at FROM security_events WHERE chain_id IS NOT NULL ORDER BY chain_id, seq LIMIT $1', [limit]),
        next: (chainId, seq, limit) => q('SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details::text AS details, created_at FROM security_events WHERE chain_id IS NOT NULL AND (chain_id, seq) > ($1, $2) ORDER BY chain_id, seq LIMIT $3', [chainId, seq, limit]),
        firstChainedId: async () => numOrNull(((await tx.unsafe('SELECT min(id) AS first FROM security_events WHERE chain_id IS NOT NULL')) as { first: unknown }[])[0]?.first),
        strayAfter: async (id) => (await q('SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details::text AS details, created_at FROM security_events WHERE chain_id IS NULL AND id > $1 ORDER BY id LIMIT 1', [id]))[0],
        at: async (chainId, seq) => {
          const r = ((await tx.unsafe('SELECT id, hash FROM security_events WHERE chain_id = $1 AND seq = $2', [chainId, seq])) as { id: unknown; hash: string | null }[])[0]
          return r ? { id: num(r.id), hash: r.hash } : undefined
        },
        unchained: async () => num(((await tx.unsafe('SELECT count(*) AS n FROM security_events WHERE chain_id IS NULL')) as { n: unknown }[])[0]?.n ?? 0),
        pause: async () => {},
      })
    }) as Promise<T>
  }
  const sqlite = source
  const snapshot = isFileDb(sqlite)
  const db = snapshot ? new Database(sqlite.filename, { readonly: true, strict: true }) : sqlite
  try {
    if (snapshot) {
      db.run('PRAGMA busy_timeout = 5000')
      db.run('BEGIN')
    }
    const first = db.query<StoredRow, [number]>('SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at FROM security_events WHERE chain_id IS NOT NULL ORDER BY chain_id, seq LIMIT ?')
    const next = db.query<StoredRow, [string, number, number]>('SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at FROM security_events WHERE chain_id IS NOT NULL AND (chain_id, seq) > (?, ?) ORDER BY chain_id, seq LIMIT ?')
    const stray = db.query<StoredRow, [number]>('SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at FROM security_events WHERE chain_id IS NULL AND id > ? ORDER BY id LIMIT 1')
    const at = db.query<{ id: number; hash: string | null }, [string, number]>('SELECT id, hash FROM security_events WHERE chain_id = ? AND seq = ?')
    return await fn({
      first: async (limit) => first.all(limit),
      next: async (chainId, seq, limit) => next.all(chainId, seq, limit),
      firstChainedId: async () => db.query<{ first: number | null }, []>('SELECT min(id) AS first FROM security_events WHERE chain_id IS NOT NULL').get()?.first ?? null,
      strayAfter: async (id) => stray.get(id) ?? undefined,
      at: async (chainId, seq) => at.get(chainId, seq) ?? undefined,
      unchained: async () => db.query<{ n: number }, []>('SELECT count(*) AS n FROM security_events WHERE chain_id IS NULL').get()?.n ?? 0,
      // An in-memory database (tests) is walked without yielding, so no other statement interleaves.
      pause: () => (snapshot ? new Promise((resolve) => setImmediate(resolve)) : Promise.resolve()),
    })
  } finally {
    if (snapshot) {
      try {
        db.run('COMMIT')
      } catch {}
      db.close()
    }
  }
}

/**
 * Walks every chain in (chain, position) order, in batches, and reports the first broken link. The walk
 * reads one snapshot: on SQLite a file database is read through its own read-only connection inside one
 * read transaction (a WAL snapshot), on PostgreSQL inside one REPEATABLE READ, READ ONLY transaction; so
 * events pruned or appended meanwhile cannot make an intact trail look broken, and writers never wait.
 * An in-memory SQLite database (tests) is walked on its connection.
 */
export async function verifyChains(source: AuditSource, opts: { batchSize?: number; heads?: ExpectedHead[] } = {}): Promise<VerifyReport> {
  const batch = opts.batchSize ?? 1000
  return withSnapshot(source, async (db) => {
    const report: VerifyReport = { intact: true, events: 0, unchainedEvents: 0, chains: [], firstBroken: null }
    const broken = (r: StoredRow, reason: BreakReason, detail: string): VerifyReport => {
      report.intact = false
      report.firstBroken = { chainId: r.chain_id, eventId: r.id, position: r.seq, reason, detail }
      return report
    }
    let walk: Walk | undefined
    let rows = await db.first(batch)
    while (rows.length > 0) {
      for (const r of rows) {
        const seq = r.seq ?? 0
        if (!walk || walk.head.chainId !== r.chain_id) {
          if (walk) report.chains.push(walk.head)
          if (seq < 1) return broken(r, 'out_of_order', `position ${seq} is not a chain position`)
          // The oldest remaining event of a chain is trusted: position 1 must start from GENESIS, a later
          // position is where pruning stopped.
          if (seq === 1 && r.prev_hash !== GENESIS) return broken(r, 'prev_hash_mismatch', 'the first event of the chain does not start from the genesis hash')
          walk = {
            head: { chainId: r.chain_id!, firstPosition: seq, pruned: seq > 1, headPosition: seq, headEventId: r.id, headHash: '', headCreatedAt: '', events: 0 },
            lastHash: r.prev_hash ?? '',
          }
        } else {
          if (seq !== walk.head.headPosition + 1) {
            return broken(r, 'missing_events', `position ${walk.head.headPosition + 1}${seq - 1 > walk.head.headPosition + 1 ? `-${seq - 1}` : ''} is missing before position ${seq}`)
          }
          if (r.id <= walk.head.headEventId) return broken(r, 'out_of_order', `event ${r.id} at position ${seq} was stored before event ${walk.head.headEventId} at position ${seq - 1}`)
          if (r.prev_hash !== walk.lastHash) return broken(r, 'prev_hash_mismatch', `prev_hash does not match the hash of position ${seq - 1}`)
        }
        const fields = fieldsOfRow(r)
        if (!fields || r.hash === null || chainHash(r.prev_hash ?? '', fields) !== r.hash) {
          return broken(r, 'hash_mismatch', 'the stored fields do not match the stored hash (the event was changed)')
        }
        walk.lastHash = r.hash
        walk.head.headPosition = seq
        walk.head.headEventId = r.id
        walk.head.headHash = r.hash
        walk.head.headCreatedAt = new Date(r.created_at).toISOString()
        walk.head.events++
        report.events++
      }
      const last = rows.at(-1)!
      await db.pause()
      rows = await db.next(last.chain_id!, last.seq!, batch)
    }
    if (walk) report.chains.push(walk.head)
    // Rows written before the migration have no chain; any unchained row written after the first chained
    // one was taken out of its chain (a way to hide a chain's newest event).
    const start = await db.firstChainedId()
    if (start !== null) {
      const stray = await db.strayAfter(start)
      if (stray) return broken(stray, 'unchained_event', `event ${stray.id} was stored after hash chaining began but belongs to no chain`)
    }
    // Heads stored elsewhere: each must still be in its chain with the same hash, unless retention has
    // since pruned past it (the chain then starts later). This is what catches a rewritten or truncated chain.
    for (const h of opts.heads ?? []) {
      const row = await db.at(h.chainId, h.position)
      if (row) {
        if (row.hash !== h.hash) {
          report.intact = false
          report.firstBroken = { chainId: h.chainId, eventId: row.id, position: h.position, reason: 'head_mismatch', detail: `position ${h.position} no longer has the hash stored for it (the chain was rewritten)` }
          return report
        }
        continue
      }
      const chain = report.chains.find((c) => c.chainId === h.chainId)
      if (chain && h.position < chain.firstPosition) continue
      report.intact = false
      report.firstBroken = {
        chainId: h.chainId,
        eventId: null,
        position: h.position,
        reason: 'head_missing',
        detail: chain ? `the chain now ends at position ${chain.headPosition} (newer events were deleted)` : 'no event of this chain remains (deleted, or pruned entirely by retention)',
      }
      return report
    }
    report.unchainedEvents = await db.unchained()
    return report
  })
}
