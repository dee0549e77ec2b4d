/**
 * Checkpoints SQLite's write-ahead log from a worker thread, off the event loop.
 *
 * With SQLite's automatic checkpoint (every 1,000 WAL pages) the commit that crosses the mark copies those
 * pages into the database file and waits for two fsyncs before it returns, and the server's only thread waits
 * with it: in-process at 64 refreshes in flight, 84 of 1,129 commits took over 10 ms (29 ms each, 0.7 s of
 * CPU but 2.4 s of waiting, everything else stalled meanwhile). Here the server's connection does no
 * automatic checkpoint (`wal_autocheckpoint = 0`); a worker thread with its own connection to the same file
 * runs `PRAGMA wal_checkpoint(PASSIVE)` (https://www.sqlite.org/pragma.html#pragma_wal_checkpoint) at most
 * CHECKPOINT_EVERY_MS after a commit was reported to it (and every CHECKPOINT_IDLE_MS regardless). PASSIVE never waits for the writer or blocks
 * it: it copies the frames committed so far, and the writer starts the log over from its beginning once
 * everything is copied. Durability is unchanged (the same WAL, the same `synchronous = NORMAL`).
 *
 * The price is a second JavaScript thread (the idle binary: RSS 118-120 -> 123-124 MiB). If the worker cannot start or dies, the
 * connection goes back to the automatic checkpoint and `state` says so; a checkpoint that fails (an I/O error)
 * is kept in `lastError` until one succeeds. Readiness reports both (in the `database` check), and so do the metrics.
 */
import type { Database } from 'bun:sqlite'

/** How soon after a reported commit the worker checkpoints (commits within that time share one checkpoint). */
export const CHECKPOINT_EVERY_MS = 200
/** How often the worker checkpoints without being told of a commit (writes outside the server's transactions). */
export const CHECKPOINT_IDLE_MS = 2000
/** SQLite's own default, used whenever the worker is not running. */
export const AUTO_CHECKPOINT_PAGES = 1000

const WORKER = `
import { Database } from 'bun:sqlite'
let db
let timer
let every = 200
let idle
const run = () => {
  timer = undefined
  try {
    const r = db.query('PRAGMA wal_checkpoint(PASSIVE)').get()
    postMessage({ checkpointed: r })
  } catch (err) {
    postMessage({ failed: String(err && err.message || err), code: err && err.code, errno: err && err.errno })
  }
}
self.onmessage = (e) => {
  const m = e.data
  if (m.open) {
    try {
      db = new Database(m.open)
      db.run('PRAGMA busy_timeout = 1000')
      every = m.every
      // Writes outside the server's transactions (readiness's heartbeat, single statements) are checkpointed too.
      idle = setInterval(() => { if (!timer) run() }, m.idleEvery)
      postMessage({ ready: true })
    } catch (err) {
      postMessage({ error: String(err && err.message || err) })
    }
  } else if (m.commit) {
    if (!timer) timer = setTimeout(run, every)
  } else if (m.stop) {
    if (timer) clearTimeout(timer)
    if (idle) clearInterval(idle)
    try { db && db.close() } catch {}
    postMessage({ stopped: true })
  }
}
`

export type CheckpointState = 'background' | 'inline'

export class Checkpointer {
  state: CheckpointState = 'inline'
  /** Checkpoints the worker ran, and the last error it reported (for diagnostics and tests). */
  checkpoints = 0
  lastError: string | undefined
  /** SQLite's code of the last checkpoint's failure (`SQLITE_FULL`, `SQLITE_IOERR_…`), until one succeeds. */
  lastFailure: { code?: string; errno?: number } | undefined
  /** The last checkpoint's answer: WAL pages, and pages copied. */
  last: { log: number; checkpointed: number } | undefined
  /** Commit notices posted to the worker (at most one outstanding, see `committed`). */
  notices = 0
  private worker: Worker | undefined
  private stopped: (() => void) | undefined
  /** A notice is outstanding (the worker has not answered with a checkpoint since). */
  private notified = false
  /** A commit came while a notice was outstanding: notify again once the worker answers. */
  private dirty = false

  constructor(
    private readonly sqlite: Database,
    private readonly path: string,
    private readonly onFailure: (reason: string) => void = () => {},
    private readonly timing: { everyMs?: number; idleMs?: number } = {},
  ) {}

  /** Starts the worker; resolves once it is checkpointing (true) or the connection is back on the automatic checkpoint (false). */
  start(): Promise<boolean> {
    return new Promise((done) => {
      let settled = false
      const settle = (ok: boolean) => {
        if (!settled) {
          settled = true
          done(ok)
        }
      }
      try {
        const w = new Worker(URL.createObjectURL(new Blob([WORKER], { type: 'application/javascript' })))
        this.worker = w
        w.onmessage = (e: MessageEvent) => {
          const m = e.data as { ready?: boolean; checkpointed?: { log: number; checkpointed: number }; failed?: string; code?: string; errno?: number; error?: string; stopped?: boolean }
          if (m.ready) {
            this.sqlite.run('PRAGMA wal_autocheckpoint = 0')
            this.state = 'background'
            settle(true)
          } else if (m.checkpointed) {
            this.checkpoints++
            this.last = m.checkpointed
            this.lastError = undefined
            this.lastFailure = undefined
            this.answered()
          } else if (m.failed) {
            // One checkpoint failed (an I/O error, a full disk): the next is tried as usual; readiness says so meanwhile.
            this.lastError = m.failed
            this.lastFailure = { code: typeof m.code === 'string' ? m.code : undefined, errno: typeof m.errno === 'number' ? m.errno : undefined }
            this.answered()
          } else if (m.error) {
            this.fail(m.error)
            settle(false)
          } else if (m.stopped) this.stopped?.()
        }
        w.onerror = (e: ErrorEvent) => {
          this.fail(e.message || 'the checkpoint worker failed')
          settle(false)
        }
        // A worker that ends without an error event (its thread gone): checkpoints go back to the connection.
        w.addEventListener('close', () => {
          if (this.worker === w) {
            this.fail('the checkpoint worker exited')
            settle(false)
          }
        })
        w.postMessage({ open: this.path, every: this.timing.everyMs ?? CHECKPOINT_EVERY_MS, idleEvery: this.timing.idleMs ?? CHECKPOINT_IDLE_MS })
      } catch (err) {
        this.fail(err instanceof Error ? err.message : String(err))
        settle(false)
      }
    })
  }

  /**
   * After a commit: the worker checkpoints within CHECKPOINT_EVERY_MS. One notice is outstanding at most: a commit
   * while one is (the worker will checkpoint anyway) only marks that another is owed, sent when the worker answers,
   * so every commit is followed by a checkpoint that starts after it. At 64 refreshes in flight a message per
   * commit, each waking the worker's thread on the same core, had cost 7-16 % of an in-process refresh (README,
   * Performance, Round 5).
   */
  committed(): void {
    if (this.state !== 'background') return
    if (this.notified) {
      this.dirty = true
      return
    }
    this.notify()
  }

  private notify(): void {
    this.notified = true
    this.dirty = false
    this.notices++
    this.worker!.postMessage({ commit: true })
  }

  /** The worker answered a checkpoint (done or failed): a commit since the notice gets its own. */
  private answered(): void {
    this.notified = false
    if (this.dirty && this.state === 'background') this.notify()
  }

  /** Stops the worker (its connection closed first), and puts the connection back on the automatic checkpoint. */
  async stop(): Promise<void> {
    const w = this.worker
    if (!w) return
    this.worker = undefined
    const wasRunning = this.state === 'background'
    this.state = 'inline'
    if (wasRunning) {
      const stopped = new Promise<void>((r) => (this.stopped = r))
      w.postMessage({ stop: true })
      await Promise.race([stopped, Bun.sleep(2000)])
    }
    w.terminate()
    this.automatic()
  }

  /** SQLite's automatic checkpoint again, every AUTO_CHECKPOINT_PAGES pages (the connection may be closed already). */
  private automatic(): void {
    try {
      this.sqlite.run('PRAGMA wal_autocheckpoint = 1000')
    } catch {}
  }

  private fail(reason: string): void {
    this.lastError = reason
    if (this.state === 'background') {
      this.automatic()
    }
    this.state = 'inline'
    const w = this.worker
    this.worker = undefined
    w?.terminate()
    this.onFailure(reason)
  }
}
