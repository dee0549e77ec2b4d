/**
 * Readiness checks. Each dependency registers a check; `/health/ready` runs them all with a timeout
 * and is 503 when any required one fails. Optional dependencies (a degraded cache) report `degraded`
 * without failing readiness, since Bulwark keeps serving on its fallbacks.
 */
import { statfsSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Store } from '../../db/client'
import type { Checkpointer } from '../../db/checkpointer'
import { roles, storageHeartbeat } from '../../db/tables'
import { systemClock, type Clock } from '../../lib/clock'
import { classifyStorageError, sqliteCode, storageCode, storageReason } from '../../lib/storage-errors'

export type CheckStatus = 'ok' | 'degraded' | 'down'

export interface CheckResult {
  status: CheckStatus
  latencyMs: number
  detail?: string
}

type CheckOutcome = void | { status: CheckStatus; detail?: string }

export interface HealthCheck {
  name: string
  /** A failing required check makes the instance not ready. */
  required: boolean
  run(): Promise<void | { status: CheckStatus; detail?: string }> | void | { status: CheckStatus; detail?: string }
}

const TIMEOUT_MS = 2000

export class HealthService {
  private checks: HealthCheck[] = []

  add(check: HealthCheck): void {
    this.checks.push(check)
  }

  async ready(): Promise<{ status: 'ok' | 'degraded' | 'down'; checks: Record<string, CheckResult> }> {
    const results = await Promise.all(
      this.checks.map(async (c): Promise<[string, CheckResult, boolean]> => {
        const t0 = performance.now()
        let timer: Timer | undefined
        try {
          const r = await Promise.race([
            Promise.resolve().then(() => c.run()),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error('timed out')), TIMEOUT_MS)
            }),
          ])
          const latencyMs = Math.round((performance.now() - t0) * 100) / 100
          return [c.name, { status: r?.status ?? 'ok', latencyMs, ...(r?.detail ? { detail: r.detail } : {}) }, c.required]
        } catch (err) {
          const latencyMs = Math.round((performance.now() - t0) * 100) / 100
          return [c.name, { status: 'down', latencyMs, detail: err instanceof Error ? err.message.slice(0, 120) : 'failed' }, c.required]
        } finally {
          clearTimeout(timer)
        }
      }),
    )
    const checks: Record<string, CheckResult> = {}
    let status: 'ok' | 'degraded' | 'down' = 'ok'
    for (const [name, r, required] of results) {
      checks[name] = r
      if (r.status === 'down' && required) status = 'down'
      else if (r.status !== 'ok' && status === 'ok') status = 'degraded'
    }
    return { status, checks }
  }
}

/**
 * SQLite's background checkpointer (src/db/checkpointer.ts), as part of the database check: nothing while its
 * worker checkpoints; `down` when the last checkpoint failed for a storage reason (no space, an I/O error: the log
 * cannot be copied into the database file); `degraded` when it failed otherwise (the log grows until one succeeds)
 * or the worker is gone (SQLite checkpoints inline in commits again, which stalls requests for a checkpoint's length).
 */
export function checkpointOutcome(c: Pick<Checkpointer, 'state' | 'lastError' | 'lastFailure'>): CheckOutcome {
  const why = (c.lastError ?? 'unknown').slice(0, 120)
  if (c.state !== 'background') return { status: 'degraded', detail: `checkpoints run inline in commits: the checkpoint worker stopped (${why})` }
  const kind = c.lastFailure ? classifyStorageError(c.lastFailure) : undefined
  if (kind && kind !== 'busy') return { status: 'down', detail: `${storageReason(kind, c.lastFailure!.code)} (copying the write-ahead log into the database file)` }
  if (c.lastError) return { status: 'degraded', detail: `the last background checkpoint failed (${why})` }
  return undefined
}

/** Readiness is down below this much free space in the SQLite database's folder (64 pages of 4 KiB). */
export const MIN_FREE_BYTES = 256 * 1024

/**
 * The database check: a read through the connection the app uses, the size limit, and (at most once per
 * `probeEveryMs` of the injected clock) a committed one-row write and the free space of the database's folder
 * (under MIN_FREE_BYTES is down), so a full disk, a read-only file or an I/O error turns readiness 503 instead of
 * leaving it green while writes fail. A write lock held by
 * another process is `degraded` (reads still work; writes wait, then answer 503 storage_busy).
 * The probe result is cached between runs: a probe blocks for at most BULWARK_DB_BUSY_TIMEOUT.
 */
export function databaseCheck(store: Pick<Store, 'engine' | 'db' | 'sqlite' | 'checkpointer'>, clock: Clock = systemClock, probeEveryMs = 1000): HealthCheck {
  if (!store.sqlite) return pgDatabaseCheck(store.db, clock, probeEveryMs)
  const sqlite = store.sqlite
  const heartbeat = sqlite.prepare<unknown, [number]>('INSERT INTO storage_heartbeat (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at')
  const probe = sqlite.transaction((now: number) => heartbeat.run(now))
  let last: { at: number; result: CheckOutcome } | undefined
  // The heartbeat can succeed on a full file system: once the write-ahead log has started over it rewrites space
  // the log file already has, while a write that needs more (a sign-up) fails. So the free space is read too.
  const folder = sqlite.filename && sqlite.filename !== ':memory:' ? dirname(sqlite.filename) : undefined
  const spaceLeft = (): CheckOutcome => {
    if (!folder) return undefined
    try {
      const fs = statfsSync(folder)
      // root may also write the blocks the file system reserves for it
      const free = (process.getuid?.() === 0 ? fs.bfree : fs.bavail) * fs.bsize
      if (free < MIN_FREE_BYTES) return { status: 'down', detail: `${storageReason('full')}: ${Math.floor(free / 1024)} KiB free in the database's folder [ENOSPC]` }
    } catch {} // not a file system statfs answers for: the heartbeat is the check
    return undefined
  }
  const write = (now: number): CheckOutcome => {
    try {
      probe.immediate(now)
      return undefined
    } catch (err) {
      const kind = classifyStorageError(err)
      if (!kind) throw err
      const code = sqliteCode(err)?.code
      if (kind === 'busy') return { status: 'degraded', detail: `another connection holds the write lock; writes wait, then answer 503 storage_busy [${code}]` }
      return { status: 'down', detail: storageReason(kind, code) }
    }
  }
  return {
    name: 'database',
    required: true,
    run: () => {
      sqlite.query('SELECT count(*) AS n FROM roles').get()
      const size = sqlite.query<{ pages: number; max: number; free: number }, []>('SELECT p.page_count AS pages, m.max_page_count AS max, f.freelist_count AS free FROM pragma_page_count() p, pragma_max_page_count() m, pragma_freelist_count() f').get()
      if (size && size.pages >= size.max && size.free === 0) return { status: 'down', detail: 'the database reached its size limit (max_page_count) [SQLITE_FULL]' }
      const now = clock.now()
      if (!last || now - last.at >= probeEveryMs || now < last.at) last = { at: now, result: write(now) ?? spaceLeft() }
      if (last.result) return last.result
      return store.checkpointer ? checkpointOutcome(store.checkpointer) : undefined
    },
  }
}

/**
 * PostgreSQL: a read on every run (as on SQLite) and (at most once per `probeEveryMs`) a committed heartbeat write
 * through the pool, so an unreachable server, a schema it cannot read, a read-only standby or a full disk turns
 * readiness 503. A detail names the reason and the engine's code only, never the statement or its parameters.
 */
function pgDatabaseCheck(db: Store['db'], clock: Clock, probeEveryMs: number): HealthCheck {
  let last: { at: number; result: CheckOutcome } | undefined
  return {
    name: 'database',
    required: true,
    run: async () => {
      try {
        await db.select({ id: roles.id }).from(roles).limit(1)
      } catch (err) {
        const kind = classifyStorageError(err)
        return { status: 'down', detail: kind ? `PostgreSQL did not answer a read: ${storageReason(kind, storageCode(err))}` : 'PostgreSQL did not answer a read (an unexpected error)' }
      }
      const now = clock.now()
      if (last && now - last.at < probeEveryMs && now >= last.at) return last.result
      let result: CheckOutcome
      try {
        await db.insert(storageHeartbeat).values({ id: 1, at: now }).onConflictDoUpdate({ target: storageHeartbeat.id, set: { at: now } })
        result = undefined
      } catch (err) {
        const kind = classifyStorageError(err)
        result = { status: 'down', detail: kind ? `PostgreSQL did not take a write: ${storageReason(kind, storageCode(err))}` : 'PostgreSQL did not take a write (an unexpected error)' }
      }
      last = { at: now, result }
      return result
    },
  }
}
