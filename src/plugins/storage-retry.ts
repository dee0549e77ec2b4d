/**
 * Waiting for another process's write lock without freezing the server. bun:sqlite is synchronous, so
 * SQLite's busy timeout blocks the event loop (every route, health included); it is kept short
 * (BULWARK_DB_BUSY_TIMEOUT, 50 ms) and the waiting happens here instead, asynchronously:
 *
 * - a request that failed with `storage_busy` *before it changed anything* (no statement of its own that
 *   can change rows ran during the attempt: `writeTracker` in src/db/tx.ts) is run again once the lock is free, until
 *   BULWARK_DB_BUSY_RETRY (2 s) has passed; then the 503 `storage_busy` with `Retry-After` goes out;
 * - while the lock is known to be held, one poller checks it every 25 ms with a zero busy timeout
 *   (microseconds, never blocking), and writing requests (not GET/HEAD) that arrive meanwhile wait for
 *   it instead of each blocking the loop for the busy timeout.
 * A retried request keeps its request id, is not counted again by the rate limiter (it already was), and
 * sends its body again: the bytes the body parser read, or for a multipart upload a copy taken before the first attempt.
 */
import type { Database } from 'bun:sqlite'
import { setBusyTimeout } from '../db/client'
import { writeTracker } from '../db/tx'
import type { Logger } from '../lib/logger'
import { classifyStorageError } from '../lib/storage-errors'
import { contextOf, setPeer } from './request-context'

const retried = new WeakSet<Request>()

/** True for the internal re-run of a request refused by a held lock (the rate limiter counted the first). */
export const isStorageRetry = (request: Request): boolean => retried.has(request)

const POLL_MS = 25
const MAX_RETRY_BODY = 1024 * 1024

/** Knows whether the write lock is held by someone else, and wakes waiters when it is free again. */
export class LockGate {
  private open: Promise<void> | undefined
  private release: (() => void) | undefined
  private timer: ReturnType<typeof setInterval> | undefined

  constructor(
    private readonly sqlite: Database,
    private readonly busyTimeoutMs: number,
  ) {}

  get closed(): boolean {
    return this.open !== undefined
  }

  /** Marks the lock as held and starts polling for it to be free. */
  close(): void {
    if (this.open) return
    this.open = new Promise<void>((r) => (this.release = r))
    this.timer = setInterval(() => this.poll(), POLL_MS)
    this.timer.unref?.()
  }

  /** Resolves when the lock is free or `ms` have passed, whichever is first. */
  async wait(ms: number): Promise<void> {
    if (!this.open || ms <= 0) return
    let t: ReturnType<typeof setTimeout> | undefined
    await Promise.race([this.open, new Promise<void>((r) => (t = setTimeout(r, ms)))])
    clearTimeout(t)
  }

  private poll(): void {
    let free = false
    try {
      // Synchronous code never leaves a transaction open across an await; be safe anyway.
      if (this.sqlite.inTransaction) return
      setBusyTimeout(this.sqlite, 0)
      try {
        this.sqlite.run('BEGIN IMMEDIATE')
        this.sqlite.run('ROLLBACK')
        free = true
      } finally {
        setBusyTimeout(this.sqlite, this.busyTimeoutMs)
      }
    } catch (err) {
      // Busy: still held. Anything else (read-only, full, a closed handle) is not this gate's business.
      free = classifyStorageError(err) !== 'busy'
    }
    if (!free) return
    clearInterval(this.timer)
    this.timer = undefined
    const release = this.release
    this.open = undefined
    this.release = undefined
    release?.()
  }

  stop(): void {
    clearInterval(this.timer)
    this.release?.()
    this.open = undefined
  }
}

const isMultipart = (r: Request) => /^multipart\//i.test(r.headers.get('content-type') ?? '')

/**
 * What a re-run of `attempt` sends as its body: the attempt itself when its body is still unread (or it has
 * none), the bytes the body parser read, or false when the body was consumed some other way (no re-run).
 */
function bodyAgain(attempt: Request): Request | Uint8Array | false {
  if (!attempt.body || !attempt.bodyUsed) return attempt
  return contextOf(attempt).bodyBytes ?? false
}

async function isBusyProblem(res: Response): Promise<boolean> {
  if (res.status !== 503 || !res.headers.get('content-type')?.startsWith('application/problem+json')) return false
  try {
    return ((await res.clone().json()) as { code?: string }).code === 'storage_busy'
  } catch {
    return false
  }
}

export interface BusyRetryOptions {
  sqlite?: Database
  /** BULWARK_DB_BUSY_RETRY; 0 turns retrying off. */
  windowMs: number
  busyTimeoutMs: number
  logger: Logger
}

/** Wraps `app.handle` so requests refused by a held write lock wait for it asynchronously (see above). */
export function retryWhenBusy(handle: (request: Request) => Promise<Response>, opts: BusyRetryOptions): (request: Request, peer?: string) => Promise<Response> {
  const { sqlite, windowMs, logger } = opts
  if (!sqlite || windowMs <= 0) return (request) => handle(request)
  const gate = new LockGate(sqlite, opts.busyTimeoutMs)
  return async (request, peer) => {
    const writes = request.method !== 'GET' && request.method !== 'HEAD'
    const deadline = performance.now() + windowMs
    if (writes && gate.closed) await gate.wait(windowMs)
    // A second attempt needs the body again, and a body can be read only once: what the body parser read is kept
    // on the request's context (no copy of the stream up front); a multipart upload, which Elysia's own parser
    // reads, gets a spare copy taken now. Large uploads are not retried.
    const small = Number(request.headers.get('content-length') ?? 0) <= MAX_RETRY_BODY
    let spare = request.body && small && isMultipart(request) ? request.clone() : undefined
    let attempt = request
    for (let n = 1; ; n++) {
      const mine = { wrote: false }
      const current = attempt
      const res = await writeTracker.run(mine, () => handle(current))
      const left = deadline - performance.now()
      const body = spare ?? bodyAgain(attempt)
      if (left <= 0 || body === false || !(await isBusyProblem(res)) || mine.wrote) {
        if (attempt !== request) {
          const first = contextOf(request)
          first.userId ??= contextOf(attempt).userId
        }
        return res
      }
      if (n === 1) logger.warn({ msg: 'database write lock held by another connection; waiting to retry', requestId: contextOf(request).requestId, method: request.method })
      gate.close()
      await gate.wait(left)
      const headers = new Headers(request.headers)
      headers.set('x-request-id', contextOf(request).requestId)
      attempt = body instanceof Request ? new Request(body, { headers }) : new Request(request.url, { method: request.method, headers, body: body as unknown as BodyInit })
      spare = attempt.body && isMultipart(attempt) ? attempt.clone() : undefined
      retried.add(attempt)
      if (peer) setPeer(attempt, peer)
    }
  }
}
