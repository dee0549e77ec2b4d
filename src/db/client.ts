/** Opens the SQLite database with the pragmas Bulwark relies on, migrates it, and wraps it in drizzle. */
import { Database } from 'bun:sqlite'
import { drizzle, type BunSQLiteDatabase } from 'drizzle-orm/bun-sqlite'
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import type { PgConfig } from '../config'
import * as schema from './schema'
import { migrate, type MigrateResult } from './migrate'
import { dialect, useEngine } from './tables'
import { openPg } from './pg/client'
import { migratePg } from './pg/migrate'
import { guardConnection, registerGate, routeToTransaction, type TxGate } from './tx'
import { Checkpointer } from './checkpointer'

export type Db = BunSQLiteDatabase<typeof schema>

export interface DbHandle {
  db: Db
  sqlite: Database
  /** Serialises transactions on this connection (src/db/tx.ts). */
  gate: TxGate
  migration: MigrateResult
  close(): void
}

/**
 * Opens (creating if needed) and migrates the database at `path` (`:memory:` for tests).
 * `busyTimeoutMs` is how long a statement waits for another connection's write lock once running; bun:sqlite
 * is synchronous, so that wait blocks the event loop and the server keeps it short (BULWARK_DB_BUSY_TIMEOUT).
 * Migrations and one-shot commands wait longer (5 s), since nothing else runs meanwhile.
 */
export function openDatabase(path: string, opts: { migrate?: boolean; busyTimeoutMs?: number; mmapBytes?: number } = {}): DbHandle {
  if (path !== ':memory:') {
    // Owner-only: the folder 0700 when we create it, the database file 0600 (SQLite gives its -wal and
    // -shm files the database file's mode). Created before SQLite opens it, so it is never world-readable.
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600))
    try {
      chmodSync(path, 0o600)
    } catch {} // not ours to change (another owner, read-only mount): SQLite reports what matters
  }
  const sqlite = new Database(path, { create: true, strict: true })
  // WAL: readers never block the writer; NORMAL is durable across process crashes in WAL mode.
  sqlite.run('PRAGMA journal_mode = WAL')
  sqlite.run('PRAGMA synchronous = NORMAL')
  sqlite.run('PRAGMA foreign_keys = ON')
  sqlite.run('PRAGMA busy_timeout = 5000')
  sqlite.run('PRAGMA temp_store = MEMORY')
  // A 16 MiB page cache, and pages read with read() rather than through a memory map (BULWARK_DB_MMAP_MIB,
  // default 0): every page the map had touched stayed in the process's RSS (the 100,000-user soak: 134 ->
  // 62 MiB file-backed), while the million-user lookups cost the same without it (bun run bench --scale:
  // /v1/me 157 µs with no map, 165 µs with 256 MiB; README, Performance, Round 5). Tools default to no map too.
  const mmapBytes = Math.max(0, Math.floor(opts.mmapBytes ?? 0))
  sqlite.run(`PRAGMA mmap_size = ${mmapBytes}`)
  sqlite.run('PRAGMA cache_size = -16384')
  // A checkpoint every 1,000 WAL pages (SQLite's default, set explicitly): 10,000 saved some CPU in-process
  // (refresh 218 -> 192 µs) but each checkpoint, run inside the commit that crosses the mark, then copied ten
  // times as much: refresh p99 at 64 connections 32 -> 56-60 ms over HTTP (bun run bench --only refresh, two
  // runs each). The WAL file is cut back to 64 MiB after a checkpoint (a large migration or backfill).
  sqlite.run('PRAGMA wal_autocheckpoint = 1000')
  sqlite.run('PRAGMA journal_size_limit = 67108864')
  const migration = opts.migrate === false ? { applied: [], current: 0 } : migrate(sqlite)
  setBusyTimeout(sqlite, opts.busyTimeoutMs ?? 5000)
  // Every statement drizzle prepares passes the transaction guard (src/db/tx.ts).
  const { client, gate } = guardConnection(sqlite)
  const db = drizzle({ client, schema })
  registerGate(db, gate)
  let closed = false
  return {
    db,
    sqlite,
    gate,
    migration,
    close() {
      if (closed) return
      closed = true
      // A transaction group whose commit waits for the next turn of the event loop commits now.
      gate.flush()
      try {
        sqlite.run('PRAGMA optimize')
      } catch {}
      // The log copied into the database file and cut to nothing: after a clean stop the file alone holds
      // every committed row (a copy of it is a complete backup). Before this, the last frames stayed in the log.
      try {
        sqlite.run('PRAGMA wal_checkpoint(TRUNCATE)')
      } catch {}
      sqlite.close()
    },
  }
}

/** Rows changed by a drizzle `.run()` (the dialect's answer; kept here for existing imports). */
export const changes = (result: unknown): number => dialect.changes(result)

/** Sets how long a statement waits for a held lock (PRAGMA busy_timeout takes no bound parameter). */
export function setBusyTimeout(sqlite: Database, ms: number): void {
  const n = Math.max(0, Math.min(600_000, Math.floor(Number(ms) || 0)))
  sqlite.run(`PRAGMA busy_timeout = ${n}`)
}

/** What a `withTransaction` callback receives (src/db/tx.ts): the same query API as `Db`. */
export type Tx = Db

/**
 * The store the server runs on: the embedded SQLite at `config.dbPath`, or PostgreSQL when
 * BULWARK_DATABASE_URL is set. Selects the engine for the process (src/db/tables.ts), migrates, and hands back
 * the one `db` services use. `sqlite` (the raw connection) is for the SQLite-only infrastructure: the write
 * probe of readiness and the busy-lock retry; services never see it.
 */
export interface Store {
  engine: 'sqlite' | 'postgres'
  db: Db
  sqlite?: Database
  /** SQLite on a file: the background checkpointer (src/db/checkpointer.ts), when it was asked for. */
  checkpointer?: Checkpointer
  /** PostgreSQL: the pool, for the few raw statements (retention batches). */
  pg?: import('bun').SQL
  migration: MigrateResult
  close(): Promise<void>
}

export async function openStore(config: { dbPath: string; pg?: PgConfig }, opts: { migrate?: boolean; mmapBytes?: number; checkpointWorker?: boolean; onCheckpointFailure?: (reason: string) => void; checkpointTiming?: { everyMs?: number; idleMs?: number } } = {}): Promise<Store> {
  if (config.pg) {
    useEngine('postgres')
    const pg = openPg({ url: config.pg.url, poolSize: config.pg.poolSize, statementTimeoutMs: config.pg.statementTimeoutMs, tls: config.pg.tls, caFile: config.pg.caFile })
    try {
      const migration = opts.migrate === false ? { applied: [], current: 0 } : await migratePg(pg.sql)
      const db = routeToTransaction(pg.db as never) as unknown as Db
      return { engine: 'postgres', db, pg: pg.sql, migration, close: () => pg.close() }
    } catch (err) {
      await pg.close().catch(() => {})
      throw err
    }
  }
  useEngine('sqlite')
  const h = openDatabase(config.dbPath, opts)
  let checkpointer: Checkpointer | undefined
  if (opts.checkpointWorker && config.dbPath !== ':memory:') {
    checkpointer = new Checkpointer(h.sqlite, config.dbPath, opts.onCheckpointFailure, opts.checkpointTiming)
    h.gate.onCommit = () => checkpointer!.committed()
    await checkpointer.start()
  }
  return {
    engine: 'sqlite',
    db: h.db,
    sqlite: h.sqlite,
    checkpointer,
    migration: h.migration,
    close: async () => {
      // The worker's connection first: the last connection to close checkpoints the log and removes it.
      await checkpointer?.stop()
      h.close()
    },
  }
}
