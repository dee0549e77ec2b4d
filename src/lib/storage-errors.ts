/**
 * The one place that knows which SQLite failures are about storage rather than about the request:
 * a full disk, a read-only file, an I/O error or a file that cannot be opened is `503 storage_unavailable`,
 * another connection holding the write lock is `503 storage_busy`; both carry `Retry-After`
 * (RFC 9110 §10.2.3). SQLite result codes: https://www.sqlite.org/rescode.html.
 * bun:sqlite throws `SQLiteError` with `code` (`SQLITE_FULL`, `SQLITE_BUSY`…) and `errno`; drizzle wraps
 * it in a `DrizzleQueryError` whose `cause` is the original, so the chain is walked.
 */
import { AppError } from './errors'

export type StorageFailure = 'full' | 'readonly' | 'io' | 'cantopen' | 'busy'

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

/** Which storage failure an error is, or undefined when it is something else (a constraint, a bug). */
export function classifyStorageError(err: unknown): StorageFailure | undefined {
  const c = sqliteCode(err)
  if (!c) return undefined
  for (const [prefix, kind] of BY_PREFIX) if (c.code === prefix || c.code?.startsWith(`${prefix}_`)) return kind
  return c.errno === undefined ? undefined : BY_ERRNO[c.errno & 0xff]
}

const DETAIL: Record<StorageFailure, string> = {
  busy: 'The database is busy; try again shortly.',
  full: 'Storage is unavailable right now (no space left); try again later.',
  readonly: 'Storage is unavailable right now (read-only); try again later.',
  io: 'Storage is unavailable right now (I/O error); try again later.',
  cantopen: 'Storage is unavailable right now (cannot open the database); try again later.',
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
  // Kept for the log line: the SQLite code only, never the failed query or its parameters.
  Object.defineProperty(e, 'sqlite', { value: sqliteCode(err)?.code, enumerable: true })
  return e
}
