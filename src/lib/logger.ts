/**
 * Structured JSON logs (pino) to stdout.
 *
 * Redaction: every logged object is walked (any depth, arrays included) and the value of any key that
 * names a credential is replaced by `[redacted]`, so a careless `log.info({ body })` cannot leak a
 * password, token, secret or cookie. Keys are compared lower-cased with `-` and `_` removed, so
 * `refresh_token`, `Refresh-Token` and `refreshToken` are one key.
 *
 * The sink never takes the server down: lines are written asynchronously from a bounded buffer; when the
 * output fails (a full disk: ENOSPC, a closed pipe: EPIPE, …) the lines of the failed write are dropped
 * and counted (`bulwark_log_lines_dropped_total` on /metrics), and the next line tries again, so logging
 * resumes by itself once the output works.
 *
 * Lines are batched: under load, what is logged within LOG_BATCH_MS goes out in one write, not one write per line. The access log (`accessLogger`) goes further: the response path
 * only records the line's fields; the line is formatted when the batch is written, after the response.
 */
import { fstatSync, write as fsWrite, writeSync } from 'node:fs'
import { isatty } from 'node:tty'
import pino, { type DestinationStream, type Logger } from 'pino'

export type { Logger }

/** Credential keys, normalised (lower case, no `-`/`_`). */
const SECRET_KEYS = new Set([
  'password',
  'currentpassword',
  'newpassword',
  'oldpassword',
  'passwordhash',
  'token',
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'mfatoken',
  'csrftoken',
  'xcsrftoken',
  'resettoken',
  'unlocktoken',
  'secret',
  'clientsecret',
  'totp',
  'totpsecret',
  'code',
  'otp',
  'recoverycode',
  'recoverycodes',
  'authorization',
  'proxyauthorization',
  'cookie',
  'setcookie',
  'apikey',
  'xapikey',
  'privatekey',
  'metricstoken',
  'otpauthurl',
])

const normalise = (k: string) => k.toLowerCase().replace(/[-_]/g, '')

/** True for a key whose value must never be logged: a listed one, or any `…password`/`…token`/`…secret`. */
export function isSecretKey(key: string): boolean {
  const k = normalise(key)
  return SECRET_KEYS.has(k) || k.endsWith('password') || k.endsWith('token') || k.endsWith('secret') || k.endsWith('cookie')
}

export const CENSOR = '[redacted]'
const MAX_DEPTH = 64

/**
 * A copy of `value` with every credential-named key censored, at any depth (cycles and more than 64 levels
 * become `[circular]`/`[too deep]`). Errors keep their class (pino's serializer needs it) but have their
 * own enumerable fields redacted. Unchanged sub-trees are returned as they are (no copy).
 */
export function redact(value: unknown, depth = 0, seen: WeakSet<object> = new WeakSet()): unknown {
  if (value === null || typeof value !== 'object') return value
  if (seen.has(value)) return '[circular]'
  if (depth >= MAX_DEPTH) return '[too deep]'
  seen.add(value)
  try {
    if (Array.isArray(value)) {
      let out: unknown[] | undefined
      for (let i = 0; i < value.length; i++) {
        const r = redact(value[i], depth + 1, seen)
        if (r !== value[i]) (out ??= value.slice())[i] = r
      }
      return out ?? value
    }
    const proto = Object.getPrototypeOf(value)
    const isError = value instanceof Error
    if (!isError && proto !== Object.prototype && proto !== null) return value // Dates, Buffers, class instances: as pino prints them
    let out: Record<string, unknown> | undefined
    const src = value as Record<string, unknown>
    for (const k of Object.keys(src)) {
      const v = src[k]
      // An Error's `code` is its kind (ENOENT, a problem code), not a one-time code.
      const secret = isSecretKey(k) && !(isError && k === 'code' && typeof v === 'string' && /^[A-Za-z_]+$/.test(v))
      const r = secret && v !== undefined && v !== null ? CENSOR : redact(v, depth + 1, seen)
      if (r !== v) {
        if (!out) {
          if (isError) {
            // Keep the Error (stack, message, class) and shadow the redacted fields on a copy.
            const copy = Object.create(proto) as Record<string, unknown>
            for (const n of Object.getOwnPropertyNames(src)) copy[n] = src[n]
            out = copy
          } else out = { ...src }
        }
        out[k] = r
      }
    }
    return out ?? value
  } finally {
    seen.delete(value)
  }
}

/** Writes one chunk; calls back with the error, if any, and how many bytes went out. */
export type WriteFn = (chunk: string, cb: (err: NodeJS.ErrnoException | null, written?: number) => void) => void

/** True for a descriptor whose writes never wait on a reader: a regular file, or a device that is not a terminal. */
function writesWithoutWaiting(fd: number): boolean {
  try {
    const st = fstatSync(fd)
    return st.isFile() || (st.isCharacterDevice() && !isatty(fd))
  } catch {
    return false
  }
}

/** A WriteFn over writeSync: the batch's one write, done on the spot; an error (ENOSPC, EAGAIN…) is handed back. */
const syncWriter =
  (fd: number): WriteFn =>
  (chunk, cb) => {
    let written: number
    try {
      written = writeSync(fd, chunk)
    } catch (e) {
      return cb(e as NodeJS.ErrnoException)
    }
    cb(null, written)
  }

/** A queued line: text, or a function that formats it when the batch is written (off the response path). */
type Queued = string | (() => string)

/**
 * Under load, lines are written at most this often, in one write each time (a write per line costs a
 * system call and a thread-pool round trip per request); after a quiet interval a line goes out at once.
 * A process killed with SIGKILL loses at most this long of lines; any other exit writes what is queued
 * synchronously.
 */
export const LOG_BATCH_MS = 10

/** What a deferred line is assumed to weigh against the queue bound until it is formatted. */
const DEFERRED_LINE_BYTES = 256

/**
 * A pino destination that cannot fail its caller: a bounded in-memory queue drained by one async write at
 * a time, in batches (everything queued within LOG_BATCH_MS is one write, after the caller has gone on). A
 * failed write drops its lines and counts them; a queue over `maxBytes` (a sink slower than the logging)
 * drops new lines and counts them. `EAGAIN` is retried. The next write after a failure is tried normally,
 * so the sink recovers as soon as the output does.
 */
export class LogSink implements DestinationStream {
  /** Lines lost since start (write errors and overflow). */
  dropped = 0
  /** The last write error code, for diagnostics (`ENOSPC`, `EPIPE`, …), cleared on success. */
  lastError: string | undefined
  private queue: Queued[] = []
  private queued = 0
  /** A write is in flight, or a drain is scheduled. */
  private busy = false
  private waiters: Array<() => void> = []

  constructor(
    private readonly out: WriteFn,
    private readonly maxBytes = 8 * 1024 * 1024,
  ) {}

  /**
   * A sink on a file descriptor (1 = stdout); what is still queued when the process exits is written
   * synchronously. A regular file or a device such as /dev/null is written synchronously from the batch
   * (an async write costs ~20 µs of CPU in Bun against ~2 µs, and such writes do not wait on a reader); a
   * pipe, socket or terminal, whose reader may stall, asynchronously.
   */
  static fd(fd: number, maxBytes?: number): LogSink {
    const sink = new LogSink(writesWithoutWaiting(fd) ? syncWriter(fd) : (chunk, cb) => fsWrite(fd, chunk, null, 'utf8', (err, written) => cb(err, written)), maxBytes)
    process.once('exit', () => sink.flushSync((chunk) => writeSync(fd, chunk)))
    return sink
  }

  /** Writes the queue now with a synchronous writer (process exit); failures drop and count, as always. */
  flushSync(writeNow: (chunk: string) => void): void {
    const lines = this.queue
    this.queue = []
    this.queued = 0
    if (lines.length === 0) return
    try {
      writeNow(this.text(lines))
    } catch {
      this.dropped += lines.length
    }
  }

  write(line: string): boolean {
    this.enqueue(line, line.length)
    return true
  }

  /**
   * Queues a line that `format` writes when its batch goes out (after the current turn of the event loop),
   * so the caller pays for neither the formatting nor the write. Counts against the bound like any line.
   */
  writeLater(format: () => string): void {
    this.enqueue(format, DEFERRED_LINE_BYTES)
  }

  /** Calls back once everything queued so far was written or dropped. */
  flush(cb?: (err?: Error) => void): void {
    if (!this.busy && this.queue.length === 0) return void cb?.()
    this.waiters.push(() => cb?.())
  }

  private enqueue(item: Queued, size: number): void {
    if (this.queued + size > this.maxBytes) {
      this.dropped++
      return
    }
    this.queue.push(item)
    this.queued += size
    if (!this.busy) {
      this.busy = true
      this.schedule()
    }
  }

  /** When the last batch was written (performance.now()). */
  private lastWrite = Number.NEGATIVE_INFINITY

  /**
   * The next drain: right after the current turn of the event loop when nothing was written for
   * LOG_BATCH_MS (a quiet server's lines, the start-up line, go out at once), else when that interval is
   * up (under load, at most one write per interval). The timer is not unref'd: in Bun 1.4 an unref'd
   * timer that is the only pending work makes the event loop spin until it fires (~100 % of a core;
   * measured), and keeping a process alive 10 ms longer to write its last lines is what a log should do.
   */
  private schedule(): void {
    const wait = this.lastWrite + LOG_BATCH_MS - performance.now()
    if (wait <= 0) setImmediate(() => this.drain())
    else setTimeout(() => this.drain(), wait)
  }

  /** The batch as one string; a deferred line that fails to format is dropped and counted. */
  private text(items: Queued[]): string {
    let out = ''
    for (const item of items) {
      if (typeof item === 'string') out += item
      else {
        try {
          out += item()
        } catch {
          this.dropped++
        }
      }
    }
    return out
  }

  private drain(): void {
    if (this.queue.length === 0) {
      this.busy = false
      const w = this.waiters
      this.waiters = []
      for (const f of w) f()
      return
    }
    this.busy = true
    const lines = this.queue
    this.queue = []
    this.queued = 0
    const chunk = lines.length === 1 && typeof lines[0] === 'string' ? lines[0] : this.text(lines)
    if (chunk.length === 0) return void queueMicrotask(() => this.drain())
    const done = (err: NodeJS.ErrnoException | null, written = chunk.length) => {
      if (err && err.code === 'EAGAIN') {
        this.requeue(chunk, lines.length)
        setTimeout(() => this.drain(), 10).unref?.()
        return
      }
      if (err) {
        this.dropped += lines.length
        this.lastError = err.code ?? err.message
      } else {
        this.lastError = undefined
        // A short write (bytes of a UTF-8 string): send the rest next.
        if (written < Buffer.byteLength(chunk)) this.requeue(Buffer.from(chunk).subarray(written).toString('utf8'), 1)
      }
      // Lines logged while this write was in flight go out together in the next batch.
      if (this.queue.length === 0) this.drain()
      else this.schedule()
    }
    this.lastWrite = performance.now()
    try {
      this.out(chunk, done)
    } catch (e) {
      done(e as NodeJS.ErrnoException)
    }
  }

  private requeue(chunk: string, _lines: number): void {
    this.queue.unshift(chunk)
    this.queued += chunk.length
  }
}

/** The LogSink a logger writes to (undefined for any other destination). */
function sinkOf(logger: Logger): LogSink | undefined {
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym]
  return stream instanceof LogSink ? stream : undefined
}

/** The logger's bindings as they appear inside one of its lines (`"service":"bulwark"`, no braces). */
const bindingsOf = (logger: Logger) => JSON.stringify(logger.bindings()).slice(1, -1)

/** Lines the logger's sink dropped so far (0 for a destination that is not a LogSink). */
export function droppedLines(logger: Logger): number {
  return sinkOf(logger)?.dropped ?? 0
}

/** The fields of one access-log line (built by the HTTP handler only: no headers, bodies or tokens). */
export interface AccessLine {
  method: string
  path: string
  route: string | undefined
  status: number
  durationMs: number
  requestId: string
  userId: string | undefined
  ip: string
}

const str = JSON.stringify

/** One access line as JSON: the keys of `logger.info({ msg: 'request', ...line })`, in its order, undefined ones left out. */
function formatAccess(prefix: readonly [string, string], time: number, l: AccessLine): string {
  let out = `{"level":"info","time":"${new Date(time).toISOString()}"${prefix[0] === ',' ? '' : prefix[0]}${prefix[1]},"method":${str(l.method)},"path":${str(l.path)}`
  if (l.route !== undefined) out += `,"route":${str(l.route)}`
  out += `,"status":${l.status},"durationMs":${l.durationMs},"requestId":${str(l.requestId)}`
  if (l.userId !== undefined) out += `,"userId":${str(l.userId)}`
  return `${out},"ip":${str(l.ip)}}\n`
}

/**
 * The access log: one `msg: "request"` line per request, the same JSON a `logger.info({ msg: 'request', … })`
 * would write (level, time, the logger's bindings, then the fields), but when the logger writes to a
 * LogSink the response path only records the fields: the line is formatted and written with its batch,
 * after the response, and nothing is dropped unless the sink's bound is reached. The redaction walk is not
 * needed: every field is one of AccessLine's, none of them a credential. 5xx lines (level error) and other
 * destinations go through the logger itself, synchronously.
 */
export function accessLogger(logger: Logger): (line: AccessLine) => void {
  const sink = sinkOf(logger)
  // `{"level":"info","time":` … `,"service":"bulwark","msg":"request"`: the logger's own key order.
  const bindings = bindingsOf(logger)
  const prefix = [`,${bindings}`, ',"msg":"request"'] as const
  return (line) => {
    const level = line.status >= 500 ? 'error' : 'info'
    if (!logger.isLevelEnabled(level)) return
    if (level === 'error' || !sink) return void logger[level]({ msg: 'request', ...line })
    const time = Date.now()
    sink.writeLater(() => formatAccess(prefix, time, line))
  }
}

/**
 * `logger.info(fields, msg)` for a line written on a hot path (the security-event line of every sign-in
 * and refresh): when the logger writes to a LogSink, only the fields are kept on the response path, and the
 * line is redacted and formatted with its batch, after the response: the same JSON pino writes (level, time,
 * bindings, the fields without undefined ones, then msg; test/lib/logger.test.ts compares them). `fields` must
 * not change after the call. Other destinations, and levels that are off, behave as `logger.info`.
 */
export function deferredInfo(logger: Logger, msg: string): (fields: Record<string, unknown>) => void {
  const sink = sinkOf(logger)
  const bindings = bindingsOf(logger)
  const head = bindings ? `,${bindings}` : ''
  const tail = `,"msg":${JSON.stringify(msg)}}\n`
  return (fields) => {
    if (!logger.isLevelEnabled('info')) return
    if (!sink) return void logger.info(fields, msg)
    const time = Date.now()
    sink.writeLater(() => {
      const body = JSON.stringify(redact(fields))
      return `{"level":"info","time":"${new Date(time).toISOString()}"${head}${body.length > 2 ? `,${body.slice(1, -1)}` : ''}${tail}`
    })
  }
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'bulwark' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: (obj) => redact(obj) as Record<string, unknown> },
      messageKey: 'msg',
    },
    destination ?? LogSink.fd(1),
  )
}
