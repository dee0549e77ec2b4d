/**
 * The one place that knows which SQLite and PostgreSQL failures are about storage rather than about the request:
 * a full disk, a read-only file, an I/O error or a file that cannot be opened is `503 storage_unavailable`,
 * another connection holding the write lock is `503 storage_busy`; both carry `Retry-After`
 * (RFC 9110 §10.2.3). SQLite result codes: https://www.sqlite.org/rescode.html.
 * bun:sqlite throws `SQLiteError` with `code` (`SQLITE_FULL`, `SQLITE_BUSY`…) and `errno`; drizzle wraps
 * it in a `DrizzleQueryError` whose `cause` is the original, so the chain is walked.
 */
import { AppError } from './errors'

export type StorageFailure = 'full' | 'readonly' | 'io' | 'cantopen' | 'busy' | 'unreachable'

/** Primary result codes (the low byte of an extended code). */
const BY_ERRNO: Record<number, StorageFailure> = { 5: 'busy', 6: 'busy', 8: 'readonly', 10: 'io', 13: 'full', 14: 'cantopen' }
const BY_PREFIX: [string, StorageFailure][] = [
  ['SQLITE_FULL', 'full'],
  ['SQLITE_READONLY', 'readonly'],
  ['SQLITE_IOERR', 'io'],
  ['SQLITE_CANTOPEN', 'cantopen'],
  ['SQLITE_BUSY', 'busy'],
  ['SQLITE_LOCKED', 'busy'],
]

/** Seconds a client should wait before retrying, by failure. */
export const RETRY_AFTER_S = { busy: 1, unavailable: 30 } as const

/** The SQLite error code (`SQLITE_FULL`, `SQLITE_IOERR_WRITE`…) found in an error or its causes. */
export function sqliteCode(err: unknown): { code?: string; errno?: number } | undefined {
  let e: unknown = err
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const { code, errno } = e as { code?: unknown; errno?: unknown }
    if (typeof code === 'string' && code.startsWith('SQLITE_')) return { code, errno: typeof errno === 'number' ? errno : undefined }
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}

/**
 * PostgreSQL (Bun's client): `ERR_POSTGRES_SERVER_ERROR` carries the SQLSTATE as `errno`; other
 * `ERR_POSTGRES_*` codes are the client's own (connection refused, closed, timed out, TLS). SQLSTATE
 * classes: https://www.postgresql.org/docs/current/errcodes-appendix.html.
 */
function pgFailure(err: unknown): { kind: StorageFailure; code: string } | undefined {
  let e: unknown = err
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const { code, errno } = e as { code?: unknown; errno?: unknown }
    if (typeof code === 'string' && code.startsWith('ERR_POSTGRES_')) {
      if (code === 'ERR_POSTGRES_SERVER_ERROR') {
        const state = typeof errno === 'string' ? errno : ''
        const kind = bySqlState(state)
        return kind ? { kind, code: `SQLSTATE ${state}` } : undefined
      }
      // The client's own failures that mean "no usable connection"; the rest (a bad parameter, a
      // syntax the client refused) are bugs, not storage.
      if (/CONNECTION|TIMEOUT|TLS|SOCKET|AUTHENTICATION|UNSUPPORTED_AUTH|SASL|IDLE|LIFETIME/.test(code)) return { kind: 'unreachable', code }
      return undefined
    }
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}

function bySqlState(state: string): StorageFailure | undefined {
  if (state.startsWith('08')) return 'unreachable' // connection exception
  if (state === '57P01' || state === '57P02' || state === '57P03' || state === '57P04' || state === '57P05') return 'unreachable' // shutting down, cannot connect now
  if (state === '53100') return 'full' // disk_full
  if (state.startsWith('53')) return 'unreachable' // out of memory, too many connections
  if (state === '57014' || state === '55P03' || state === '40001' || state === '40P01') return 'busy' // statement timeout, lock not available, serialization (after retries)
  if (state === '25006') return 'readonly' // read_only_sql_transaction (a standby)
  if (state === '58030' || state === 'XX001' || state === 'XX002') return 'io' // io_error, data or index corrupted
  return undefined
}

/** The engine's code of a storage failure (`SQLITE_FULL`, `SQLSTATE 57P01`, `ERR_POSTGRES_CONNECTION_REFUSED`). */
export const storageCode = (err: unknown): string | undefined => sqliteCode(err)?.code ?? pgFailure(err)?.code

/** Which storage failure an error is, or undefined when it is something else (a constraint, a bug). */
export function classifyStorageError(err: unknown): StorageFailure | undefined {
  const c = sqliteCode(err)
  if (!c) return pgFailure(err)?.kind
  for (const [prefix, kind] of BY_PREFIX) if (c.code === prefix || c.code?.startsWith(`${prefix}_`)) return kind
  return c.errno === undefined ? undefined : BY_ERRNO[c.errno & 0xff]
}

const DETAIL: Record<StorageFailure, string> = {
  busy: 'The database is busy; try again shortly.',
  full: 'Storage is unavailable right now (no space left); try again later.',
  readonly: 'Storage is unavailable right now (read-only); try again later.',
  io: 'Storage is unavailable right now (I/O error); try again later.',
  cantopen: 'Storage is unavailable right now (cannot open the database); try again later.',
  unreachable: 'Storage is unavailable right now (the database cannot be reached); try again later.',
}

/** Human-readable reason for logs and readiness (no paths, no SQL, no parameters). */
export const storageReason = (kind: StorageFailure, code?: string) => `${DETAIL[kind].replace(/; try again.*$/, '')}${code ? ` [${code}]` : ''}`

/** The problem a storage failure becomes, or undefined for any other error. */
export function storageAppError(err: unknown): AppError | undefined {
  const kind = classifyStorageError(err)
  if (!kind) return undefined
  const busy = kind === 'busy'
  const retryAfter = busy ? RETRY_AFTER_S.busy : RETRY_AFTER_S.unavailable
  const headers = { 'retry-after': String(retryAfter) }
  const e = busy ? new AppError(503, 'storage_busy', DETAIL[kind], { headers }) : new AppError(503, 'storage_unavailable', DETAIL[kind], { headers })
  // Kept for the log line: the SQLite code or SQLSTATE only, never the failed query or its parameters.
  Object.defineProperty(e, 'sqlite', { value: storageCode(err), enumerable: true })
  return e
}

/**
 * A text value PostgreSQL cannot store: U+0000 (SQLSTATE 22021, character_not_in_repertoire) or a character the
 * database encoding lacks (22P05). It comes from the request (a path, query or body string), so it is the
 * request's problem, a 422, not a 500; SQLite stores such strings, PostgreSQL's text type cannot.
 */
export function unstorableTextError(err: unknown): AppError | undefined {
  let e: unknown = err
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const { code, errno } = e as { code?: unknown; errno?: unknown }
    if (code === 'ERR_POSTGRES_SERVER_ERROR') {
      if (errno !== '22021' && errno !== '22P05') return undefined
      return new AppError(422, 'validation_failed', 'A text value contains a character that cannot be stored (such as U+0000).', { errors: [{ path: '/', message: 'contains a character that cannot be stored (such as U+0000)' }] })
    }
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}
