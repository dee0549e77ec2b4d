/**
 * Copies every row of one Bulwark database into another, SQLite and PostgreSQL in either direction
 * (`bulwark db copy`). The target is migrated first; then, in ONE transaction on the target, its rows are
 * deleted, every table is copied in foreign-key order in batches, values are converted (SQLite 0/1 and
 * PostgreSQL booleans, JSON text and jsonb, bytea and blobs, int8 strings and numbers), PostgreSQL identity
 * sequences are moved past the copied ids, and each table's row count and an order-independent checksum of
 * its rows (primary keys and values) are compared with the source before COMMIT. Any difference rolls back.
 * The source is only read, inside one read transaction (a consistent snapshot).
 */
import { Database } from 'bun:sqlite'
import type { ReservedSQL, SQL } from 'bun'
import { existsSync } from 'node:fs'
import { getTableConfig, SQLiteTable } from 'drizzle-orm/sqlite-core'
import * as lite from '../schema'
import { openDatabase } from '../client'
import { MIGRATIONS } from '../migrate'
import { openPg, parsePgUrl } from './client'
import { migratePg, PG_MIGRATIONS } from './migrate'

export type Endpoint = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string }
type Kind = 'boolean' | 'json' | 'bytes' | 'number' | 'string'
export interface TableSpec {
  name: string
  columns: { name: string; kind: Kind }[]
  primaryKey: string[]
  identity: boolean
}
export interface CopyResult {
  tables: { name: string; rows: number }[]
}

export class CopyError extends Error {}

const BATCH = 500

/** `sqlite:PATH` or a postgres:// / postgresql:// URL. */
export function parseEndpoint(raw: string): Endpoint {
  if (/^postgres(ql)?:\/\//i.test(raw)) {
    parsePgUrl(raw)
    return { kind: 'postgres', url: raw }
  }
  if (raw.startsWith('sqlite:') && raw.length > 'sqlite:'.length) return { kind: 'sqlite', path: raw.slice('sqlite:'.length) }
  throw new CopyError(`"${maskEndpoint(raw).slice(0, 80)}" is neither sqlite:PATH nor a postgres:// URL`)
}

export function maskEndpoint(raw: string): string {
  try {
    const u = new URL(raw)
    if (u.password) u.password = '********'
    return u.protocol === 'sqlite:' ? raw : u.toString()
  } catch {
    return raw.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:********@')
  }
}

function kindOf(columnType: string, dataType: string): Kind {
  if (columnType === 'SQLiteBoolean') return 'boolean'
  if (columnType === 'SQLiteTextJson') return 'json'
  if (columnType === 'SQLiteBlobBuffer') return 'bytes'
  return dataType === 'number' ? 'number' : 'string'
}

/** Every table of the schema, parents before children (foreign keys). */
export function tableSpecs(): TableSpec[] {
  const tables = (Object.values(lite) as unknown[]).filter((t): t is SQLiteTable => t instanceof SQLiteTable)
  const specs = new Map<string, TableSpec & { parents: string[] }>()
  for (const t of tables) {
    const c = getTableConfig(t)
    const pk = c.primaryKeys.length ? c.primaryKeys[0]!.columns.map((x) => x.name) : c.columns.filter((x) => x.primary).map((x) => x.name)
    specs.set(c.name, {
      name: c.name,
      columns: c.columns.map((x) => ({ name: x.name, kind: kindOf(x.columnType, x.dataType) })),
      primaryKey: pk,
      identity: c.columns.some((x) => x.primary && (x as { autoIncrement?: boolean }).autoIncrement === true),
      parents: c.foreignKeys.map((f) => getTableConfig(f.reference().foreignTable as SQLiteTable).name).filter((n) => n !== c.name),
    })
  }
  const out: TableSpec[] = []
  const seen = new Set<string>()
  const visit = (name: string) => {
    if (seen.has(name)) return
    seen.add(name)
    const s = specs.get(name)!
    for (const p of s.parents) visit(p)
    out.push({ name: s.name, columns: s.columns, primaryKey: s.primaryKey, identity: s.identity })
  }
  for (const name of [...specs.keys()].sort()) visit(name)
  return out
}

const q = (id: string) => `"${id.replaceAll('"', '""')}"`

/** A value as the copy carries it: booleans, parsed JSON, Buffers, numbers, strings, null. */
function canonical(kind: Kind, v: unknown, where: string): unknown {
  if (v === null || v === undefined) return null
  switch (kind) {
    case 'boolean':
      return v === true || v === 1 || v === 1n || v === '1' || v === 't'
    case 'json':
      if (typeof v !== 'string') return v
      try {
        return JSON.parse(v)
      } catch {
        throw new CopyError(`${where}: the stored value is not JSON`)
      }
    case 'bytes':
      return Buffer.from(v as Uint8Array)
    case 'number': {
      const n = typeof v === 'number' ? v : Number(v)
      if (!Number.isSafeInteger(n) && !Number.isFinite(n)) throw new CopyError(`${where}: ${String(v).slice(0, 30)} is not a number`)
      return n
    }
    default:
      if (typeof v === 'string' && v.includes('\u0000')) throw new CopyError(`${where}: contains a NUL character, which PostgreSQL text cannot hold`)
      return String(v)
  }
}

/** Order-independent checksum of a table: the sum (mod 2^64) of SHA-256 prefixes of each row's canonical form. */
class Checksum {
  sum = 0n
  add(row: unknown[]) {
    const text = JSON.stringify(row, (_k, v) => (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data) ? `b64:${Buffer.from(v.data).toString('base64')}` : sortKeys(v)))
    const h = new Bun.CryptoHasher('sha256').update(text).digest()
    this.sum = (this.sum + h.readBigUInt64BE(0)) & 0xffffffffffffffffn
  }
}
function sortKeys(v: unknown): unknown {
  if (!v || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) return v
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/** A store the copy reads from or writes to. */
interface Side {
  label: string
  schemaVersion(): Promise<{ applied: number; known: number }>
  count(table: string): Promise<number>
  /** Pages of raw rows (objects keyed by column) in primary-key order. */
  page(t: TableSpec, offset: number, limit: number): Promise<Record<string, unknown>[]>
  close(): Promise<void>
}

function sqliteSide(db: Database, label: string): Side {
  return {
    label,
    async schemaVersion() {
      const has = db.query<{ n: number }, []>("SELECT count(*) AS n FROM sqlite_master WHERE name = '__drizzle_migrations'").get()!.n
      const applied = has ? db.query<{ n: number }, []>('SELECT count(*) AS n FROM "__drizzle_migrations"').get()!.n : 0
      return { applied, known: MIGRATIONS.length }
    },
    async count(table) {
      return db.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${q(table)}`).get()!.n
    },
    async page(t, offset, limit) {
      return db.query<Record<string, unknown>, [number, number]>(`SELECT ${t.columns.map((c) => q(c.name)).join(', ')} FROM ${q(t.name)} ORDER BY ${t.primaryKey.map(q).join(', ')} LIMIT ? OFFSET ?`).all(limit, offset)
    },
    async close() {
      db.close()
    },
  }
}

function pgSide(sql: { unsafe: SQL["unsafe"] }, label: string, close: () => Promise<void>): Side {
  return {
    label,
    async schemaVersion() {
      const [r] = await sql.unsafe(`SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS has`)
      const applied = r.has ? Number((await sql.unsafe('SELECT count(*) AS n FROM drizzle.__drizzle_migrations'))[0].n) : 0
      return { applied, known: PG_MIGRATIONS.length }
    },
    async count(table) {
      return Number((await sql.unsafe(`SELECT count(*) AS n FROM ${q(table)}`))[0].n)
    },
    async page(t, offset, limit) {
      return [...(await sql.unsafe(`SELECT ${t.columns.map((c) => q(c.name)).join(', ')} FROM ${q(t.name)} ORDER BY ${t.primaryKey.map(q).join(', ')} LIMIT $1 OFFSET $2`, [limit, offset]))]
    },
    close,
  }
}

/** Rows of the fresh schema (the seeded roles): a freshly migrated target holds exactly these. */
function seededCounts(): Map<string, number> {
  const h = openDatabase(':memory:')
  const m = new Map<string, number>()
  for (const t of tableSpecs()) m.set(t.name, h.sqlite.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${q(t.name)}`).get()!.n)
  h.close()
  return m
}


export async function copyDatabase(from: Endpoint, to: Endpoint, opts: { force?: boolean; log?: (line: string) => void } = {}): Promise<CopyResult> {
  const log = opts.log ?? (() => {})
  const specs = tableSpecs()
  if (from.kind === to.kind && (from.kind === 'sqlite' ? from.path === (to as { path: string }).path : from.url === (to as { url: string }).url)) {
    throw new CopyError('--from and --to name the same database')
  }
  // Source: read-only, one snapshot.
  let source: Side
  let endSource: () => Promise<void>
  if (from.kind === 'sqlite') {
    if (!existsSync(from.path)) throw new CopyError(`no SQLite database at ${from.path}`)
    const db = new Database(from.path, { readonly: true })
    db.run('PRAGMA busy_timeout = 10000')
    db.run('BEGIN')
    source = sqliteSide(db, `sqlite:${from.path}`)
    endSource = async () => {
      try {
        db.run('COMMIT')
      } catch {}
      db.close()
    }
  } else {
    const h = openPg({ url: from.url, poolSize: 1 })
    const conn = await h.sql.reserve()
    await conn.unsafe('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    source = pgSide(conn, maskEndpoint(from.url), async () => {})
    endSource = async () => {
      await conn.unsafe('COMMIT').catch(() => {})
      conn.release()
      await h.close()
    }
  }
  try {
    const v = await source.schemaVersion()
    if (v.applied !== v.known) {
      throw new CopyError(`the source has ${v.applied} migrations applied and this binary knows ${v.known}: run the binary that matches it, or \`bulwark migrate\` it, first`)
    }
    const sourceCounts = new Map<string, number>()
    for (const t of specs) sourceCounts.set(t.name, await source.count(t.name))
    const seeded = seededCounts()

    if (to.kind === 'sqlite') {
      const h = openDatabase(to.path, { busyTimeoutMs: 10_000 })
      try {
        return await copyInto(specs, source, sourceCounts, seeded, sqliteTarget(h.sqlite), opts.force === true, log)
      } finally {
        h.close()
      }
    }
    const h = openPg({ url: to.url, poolSize: 2 })
    try {
      await migratePg(h.sql)
      const conn = await h.sql.reserve()
      try {
        return await copyInto(specs, source, sourceCounts, seeded, pgTarget(conn), opts.force === true, log)
      } finally {
        conn.release()
      }
    } finally {
      await h.close()
    }
  } finally {
    await endSource()
  }
}

interface Target {
  count(table: string): Promise<number>
  begin(): Promise<void>
  commit(): Promise<void>
  rollback(): Promise<void>
  clear(table: string): Promise<void>
  insert(t: TableSpec, rows: unknown[][]): Promise<void>
  page(t: TableSpec, offset: number, limit: number): Promise<Record<string, unknown>[]>
  resetSequence(t: TableSpec): Promise<void>
}

function sqliteTarget(db: Database): Target {
  const side = sqliteSide(db, '')
  return {
    count: side.count,
    page: side.page,
    async begin() {
      db.run('BEGIN IMMEDIATE')
    },
    async commit() {
      db.run('COMMIT')
    },
    async rollback() {
      if (db.inTransaction) db.run('ROLLBACK')
    },
    async clear(table) {
      db.run(`DELETE FROM ${q(table)}`)
    },
    async insert(t, rows) {
      const cols = t.columns
      const values = rows.map(() => `(${cols.map(() => '?').join(', ')})`).join(', ')
      const params = rows.flatMap((r) =>
        r.map((v, i) => {
          if (v === null) return null
          const k = cols[i]!.kind
          return k === 'boolean' ? (v ? 1 : 0) : k === 'json' ? JSON.stringify(v) : k === 'bytes' ? new Uint8Array(v as Buffer) : v
        }),
      )
      db.prepare(`INSERT INTO ${q(t.name)} (${cols.map((c) => q(c.name)).join(', ')}) VALUES ${values}`).run(...(params as never[]))
    },
    async resetSequence() {}, // SQLite moves sqlite_sequence past explicitly inserted AUTOINCREMENT ids itself
  }
}

function pgTarget(conn: ReservedSQL): Target {
  const side = pgSide(conn, '', async () => {})
  return {
    count: side.count,
    page: side.page,
    async begin() {
      await conn.unsafe('BEGIN')
    },
    async commit() {
      await conn.unsafe('COMMIT')
    },
    async rollback() {
      await conn.unsafe('ROLLBACK').catch(() => {})
    },
    async clear(table) {
      await conn.unsafe(`DELETE FROM ${q(table)}`)
    },
    async insert(t, rows) {
      const cols = t.columns
      const params: unknown[] = []
      const values = rows
        .map((r) => {
          const slots = r.map((v, i) => {
            const k = cols[i]!.kind
            // JSON goes to the client as the value itself: text bound to a jsonb parameter is stored as a JSON string.
            params.push(v)
            return k === 'json' ? `$${params.length}::jsonb` : k === 'bytes' ? `$${params.length}::bytea` : `$${params.length}`
          })
          return `(${slots.join(', ')})`
        })
        .join(', ')
      await conn.unsafe(`INSERT INTO ${q(t.name)} (${cols.map((c) => q(c.name)).join(', ')}) OVERRIDING SYSTEM VALUE VALUES ${values}`, params)
    },
    async resetSequence(t) {
      const col = t.primaryKey[0]!
      await conn.unsafe(`SELECT setval(pg_get_serial_sequence('${q(t.name)}', '${col}'), GREATEST(coalesce(max(${q(col)}), 0), 1), max(${q(col)}) IS NOT NULL) FROM ${q(t.name)}`)
    },
  }
}

async function copyInto(specs: TableSpec[], source: Side, sourceCounts: Map<string, number>, seeded: Map<string, number>, target: Target, force: boolean, log: (line: string) => void): Promise<CopyResult> {
  if (!force) {
    const busy: string[] = []
    for (const t of specs) {
      const n = await target.count(t.name)
      if (n !== (seeded.get(t.name) ?? 0)) busy.push(`${t.name} (${n})`)
    }
    if (busy.length) throw new CopyError(`the target is not empty: ${busy.slice(0, 6).join(', ')}${busy.length > 6 ? ', …' : ''}; use --force to replace its contents`)
  }
  const result: CopyResult = { tables: [] }
  await target.begin()
  try {
    for (const t of [...specs].reverse()) await target.clear(t.name)
    for (const t of specs) {
      const expected = sourceCounts.get(t.name)!
      const sum = new Checksum()
      let copied = 0
      for (let offset = 0; ; offset += BATCH) {
        const raw = await source.page(t, offset, BATCH)
        if (raw.length === 0) break
        const rows = raw.map((r) => t.columns.map((c) => canonical(c.kind, r[c.name], `${t.name}.${c.name}`)))
        for (const r of rows) sum.add(r)
        for (let i = 0; i < rows.length; i += 200) await target.insert(t, rows.slice(i, i + 200))
        copied += rows.length
        if (raw.length < BATCH) break
      }
      if (t.identity) await target.resetSequence(t)
      // Verification: count and checksum read back from the target inside the same transaction.
      const back = new Checksum()
      let seen = 0
      for (let offset = 0; ; offset += BATCH) {
        const raw = await target.page(t, offset, BATCH)
        for (const r of raw) back.add(t.columns.map((c) => canonical(c.kind, r[c.name], `${t.name}.${c.name}`)))
        seen += raw.length
        if (raw.length < BATCH) break
      }
      const counted = await target.count(t.name)
      if (copied !== expected || counted !== expected || seen !== expected) throw new CopyError(`${t.name}: the source has ${expected} rows, ${copied} were read and the target has ${counted}; nothing was committed`)
      if (back.sum !== sum.sum) throw new CopyError(`${t.name}: the rows in the target differ from the source (checksum); nothing was committed`)
      result.tables.push({ name: t.name, rows: expected })
      log(`${t.name.padEnd(20)} ${String(expected).padStart(9)} rows`)
    }
    await target.commit()
  } catch (e) {
    await target.rollback()
    throw e
  }
  return result
}
