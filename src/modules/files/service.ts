/**
 * Uploaded files. The type is decided by the bytes (magic numbers via file-type), never by the name or the
 * claimed Content-Type alone: a file whose contents do not match its claimed type, or whose type is not
 * allowed, is 415. With a scanner configured every upload is scanned by clamd before anything is stored
 * (malware → 422 `file_rejected`); if the scanner cannot give a verdict the upload is refused (503), never
 * stored unscanned. Files live under `<data dir>/files/<id>`, written to a temporary name and renamed,
 * so a crash never leaves a half-written file behind a committed row.
 */
import { withTransaction } from '../../db/tx'
import { and, asc, eq, gt, type SQL } from 'drizzle-orm'
import { createHash } from 'node:crypto'
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileTypeFromBuffer } from 'file-type'
import type { CoreDeps } from '../../deps'
import { files } from '../../db/tables'
import { CircuitBreaker } from '../../lib/circuit-breaker'
import { ClamdClient, ClamdTimeout } from '../../lib/clamd'
import { AppError, notFound } from '../../lib/errors'
import { newId } from '../../lib/ids'
import { canAccessOwned, type PermissionHolder } from '../../lib/permissions'
import type { AuditService, RequestMeta } from '../audit/service'

/** Types accepted by POST /v1/files; avatars take the images only. */
export const FILE_TYPES = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/gif', 'application/pdf'])
export const AVATAR_TYPES = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/gif'])

export interface FileView {
  id: string
  name: string
  type: string
  size: number
  sha256: string
  createdAt: string
}

type Row = typeof files.$inferSelect

const toView = (r: Row): FileView => ({ id: r.id, name: r.name, type: r.type, size: r.size, sha256: r.sha256, createdAt: new Date(r.createdAt).toISOString() })

// Path separators, controls, bidi overrides and characters that break Content-Disposition.
const UNSAFE_NAME = /[\p{Cc}\u200E\u200F\u202A-\u202E\u2066-\u2069\\/"<>:|?*]/gu

/** A display name safe to store and to send back in Content-Disposition. */
export function safeFileName(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? ''
  const clean = base.normalize('NFC').replace(UNSAFE_NAME, '_').replace(/^\.+/, '').trim()
  return [...(clean || 'file')].slice(0, 200).join('')
}

export interface FilesDeps extends Pick<CoreDeps, 'db' | 'clock' | 'config' | 'logger'> {
  audit: AuditService
}

/** Files after `after` by id, of one owner or everyone's (exported for the EXPLAIN tests, test/db/list-plans.test.ts). */
export function filesListQuery(db: CoreDeps['db'], ownerId: string | undefined, after: string | undefined, limit: number) {
  const conds: SQL[] = [gt(files.id, after ?? '')]
  if (ownerId !== undefined) conds.push(eq(files.ownerId, ownerId))
  return db.select().from(files).where(and(...conds)).orderBy(asc(files.id)).limit(limit)
}

export class FilesService {
  private readonly dir: string
  private readonly scanner: ClamdClient | undefined
  readonly breaker: CircuitBreaker

  constructor(private readonly d: FilesDeps) {
    this.dir = join(d.config.dataDir, 'files')
    this.scanner = d.config.clamd ? new ClamdClient(d.config.clamd, d.config.clamdTimeouts) : undefined
    // One log line per state change (open, half-open, closed), never one per refused upload.
    this.breaker = new CircuitBreaker({
      name: 'clamd',
      clock: d.clock,
      tripOn: (err) => err instanceof ClamdTimeout,
      onStateChange: (to, from, err) => {
        const fields = { breaker: 'clamd', from, to, ...(err ? { err: err instanceof Error ? err.message : String(err) } : {}) }
        if (to === 'closed') d.logger.info(fields, 'scanner circuit breaker changed state')
        else d.logger.warn(fields, 'scanner circuit breaker changed state')
      },
    })
  }

  /** Whether uploads are scanned (a scanner is configured). */
  get scanning(): boolean {
    return this.scanner !== undefined && this.d.config.uploads.scan
  }

  /** The readiness probe of the scanner. */
  async ping(): Promise<boolean> {
    return this.scanner ? await this.scanner.ping() : true
  }

  /** Checks type and contents, scans, stores. */
  async store(ownerId: string, file: File, purpose: 'file' | 'avatar', meta: RequestMeta): Promise<FileView> {
    if (file.size > this.d.config.uploads.maxBytes) throw new AppError(413, 'payload_too_large', `The file is larger than ${this.d.config.uploads.maxBytes} bytes.`)
    if (file.size === 0) throw new AppError(422, 'validation_failed', 'The file is empty.', { errors: [{ path: '/file', message: 'Expected a non-empty file' }] })
    const bytes = new Uint8Array(await file.arrayBuffer())
    const allowed = purpose === 'avatar' ? AVATAR_TYPES : FILE_TYPES
    const detected = await fileTypeFromBuffer(bytes)
    const claimed = (file.type || '').split(';')[0]!.trim().toLowerCase()
    if (!detected || !allowed.has(detected.mime)) {
      throw new AppError(415, 'unsupported_media_type', `Accepted types: ${[...allowed].join(', ')}.`)
    }
    if (claimed && claimed !== 'application/octet-stream' && claimed !== detected.mime) {
      throw new AppError(415, 'unsupported_media_type', `The contents are ${detected.mime}, not ${claimed}.`)
    }
    if (this.scanning) await this.scan(ownerId, bytes, meta)
    const id = newId()
    const sha256 = createHash('sha256').update(bytes).digest('hex')
    const now = this.d.clock.now()
    const row: Row = { id, ownerId, name: safeFileName(file.name || 'file'), type: detected.mime, size: bytes.length, sha256, purpose, createdAt: now }
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const tmp = join(this.dir, `${id}.tmp`)
    writeFileSync(tmp, bytes, { mode: 0o600, flush: true })
    renameSync(tmp, join(this.dir, id))
    const replaced: Row[] = []
    try {
      await withTransaction(this.d.db, async (tx) => {
        if (purpose === 'avatar') replaced.push(...(await tx.delete(files).where(and(eq(files.ownerId, ownerId), eq(files.purpose, 'avatar'))).returning()))
        await tx.insert(files).values(row)
      })
    } catch (e) {
      rmSync(join(this.dir, id), { force: true })
      throw e
    }
    for (const r of replaced) rmSync(join(this.dir, r.id), { force: true })
    await this.d.audit.record({ type: purpose === 'avatar' ? 'avatar_uploaded' : 'file_uploaded', outcome: 'success', actorId: ownerId, targetId: ownerId, details: { fileId: id, type: row.type, size: row.size, scanned: this.scanning } }, meta)
    return toView(row)
  }

  private async scan(ownerId: string, bytes: Uint8Array, meta: RequestMeta): Promise<void> {
    const unavailable = () => new AppError(503, 'scanner_unavailable', 'The virus scanner is not available; try again later.')
    const verdict = await this.breaker.run(
      () => this.scanner!.scan(bytes),
      (err) => {
        // Failures are logged by the breaker when they change its state; below the threshold, at debug.
        if (err) this.d.logger.debug({ err: err instanceof Error ? err.message : String(err) }, 'clamd scan failed')
        return undefined
      },
    )
    if (!verdict) throw unavailable()
    if (!verdict.clean) {
      await this.d.audit.record({ type: 'file_rejected', outcome: 'failure', actorId: ownerId, targetId: ownerId, details: { signature: verdict.signature, size: bytes.length } }, meta)
      throw new AppError(422, 'file_rejected', 'The file was rejected by the virus scanner.')
    }
  }

  /** A file the caller may see (`files:read:own` or `:any`); 404 otherwise, never 403. */
  async get(who: PermissionHolder, id: string, action: 'files:read' | 'files:delete' = 'files:read'): Promise<Row> {
    const r = (await this.d.db.select().from(files).where(eq(files.id, id)).limit(1))[0]
    if (!r || !canAccessOwned(who, action, r.ownerId)) throw notFound('No such file.')
    return r
  }

  view(r: Row): FileView {
    return toView(r)
  }

  /** The stored bytes of a file row. */
  content(r: Row): Blob {
    return Bun.file(join(this.dir, r.id))
  }

  /** Own files, or everyone's with `files:read:any`; keyset by id. */
  async list(who: PermissionHolder, after: string | undefined, limit: number): Promise<{ items: FileView[]; last: string | undefined; more: boolean }> {
    const rows = await filesListQuery(this.d.db, who.permissions.includes('files:read:any') ? undefined : who.userId, after, limit + 1)
    const page = rows.slice(0, limit)
    return { items: page.map(toView), last: page.at(-1)?.id, more: rows.length > limit }
  }

  async delete(who: PermissionHolder, id: string, meta: RequestMeta): Promise<void> {
    const r = await this.get(who, id, 'files:delete')
    await this.d.db.delete(files).where(eq(files.id, r.id))
    rmSync(join(this.dir, r.id), { force: true })
    await this.d.audit.record({ type: 'file_deleted', outcome: 'success', actorId: who.userId, targetId: r.ownerId, details: { fileId: r.id } }, meta)
  }
}
