/**
 * User administration: the list (keyset pagination over UUIDv7 ids with an HMAC-signed cursor), reading,
 * renaming, disabling, unlocking, deleting users and ending their sessions. Every change on another user
 * goes through RbacService.authorizeOnUser (strictly lower level, never oneself) and emits an Invalidation
 * event so the auth plugin's session/user cache and the permission cache drop the user at once.
 */
import { literalLimit, preparedQuery, valuesPrepared, withTransaction } from '../../db/tx'
import { and, asc, eq, exists, gt, gte, inArray, isNull, lt, or, sql, type SQL } from 'drizzle-orm'
import { createHash } from 'node:crypto'
import type { Db } from '../../db/client'
import { dialect, lockouts, refreshTokens, sessions, userRoles, users } from '../../db/tables'
import type { CoreDeps } from '../../deps'
import { sign, unsign } from '../../lib/crypto'
import { LruCache } from '../../lib/cache'
import { badRequest, notFound } from '../../lib/errors'
import { pageLimit } from '../../lib/pagination'
import type { Invalidation } from '../../lib/invalidation'
import type { AuditService, RequestMeta } from '../audit/service'
import type { Actor, RbacService } from '../rbac/service'
import { resetFactors, type FactorResetResult } from './factor-reset'
import { nextUpdatedAt } from './row-version'

export type UserStatus = 'active' | 'disabled'

export interface UserView {
  id: string
  email: string
  name: string | null
  status: UserStatus
  emailVerified: boolean
  roles: string[]
  createdAt: string
}

export interface UserFilter {
  /** Prefix of the email or the name, case-insensitive. */
  q?: string
  role?: string
  status?: UserStatus
}

export interface ListOptions extends UserFilter {
  limit?: number
  cursor?: string
}

export interface Page<T> {
  items: T[]
  nextCursor: string | null
}

export interface UsersAdminDeps extends Pick<CoreDeps, 'db' | 'clock' | 'keys' | 'config'> {
  audit: Pick<AuditService, 'record'>
  invalidation: Invalidation
  rbac: RbacService
}

/** Sorts after every character, so `[q, q + TOP)` is exactly the strings starting with q (binary collation). */
const TOP = '\u{10FFFF}'
/** SQLite's lower() folds ASCII only; fold the query the same way so the lower(name) index range matches. */
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase())

type ListedRow = { id: string; email: string; name: string | null; status: UserStatus; emailVerifiedAt: number | null; createdAt: number }

/** A row of `fullPageQuery` as bun:sqlite returns it in order (valuesPrepared): the columns need no decoding. */
const fromValues = (v: unknown[]): ListedRow & { updatedAt: number } => ({
  id: v[0] as string,
  email: v[1] as string,
  name: v[2] as string | null,
  status: v[3] as UserStatus,
  emailVerifiedAt: v[4] as number | null,
  createdAt: v[5] as number,
  updatedAt: v[6] as number,
})

/** The listed columns, in this order (fromValues reads them by position; a function: the table objects are bound to the engine at start, after this module loads). */
const selection = () => ({
  id: users.id,
  email: users.email,
  name: users.name,
  status: users.status,
  emailVerifiedAt: users.emailVerifiedAt,
  createdAt: users.createdAt,
})

/**
 * The list query for one page: each filter combination is driven by the index that narrows it most
 * (role → user_roles_role, q → the email and lower(name) indexes, status → users_status_id, none → the
 * primary key), so no variant scans the users table. Exported for the EXPLAIN QUERY PLAN tests.
 */
export function listQuery(db: Db, f: { q?: string; roleId?: string; status?: UserStatus }, after: string, limit: number) {
  if (f.q !== undefined) {
    const qe = f.q.toLowerCase()
    const qn = asciiLower(f.q)
    const lname = sql`lower(${users.name})`
    const conds: SQL[] = [
      or(and(gte(users.email, qe), lt(users.email, qe + TOP)), and(gte(lname, qn), lt(lname, qn + TOP)))!,
      gt(users.id, after),
    ]
    // Unary + keeps the planner on the (selective) prefix indexes instead of walking a whole status.
    if (f.status) conds.push(sql`${dialect.unindexed(users.status)} = ${f.status}`)
    if (f.roleId) conds.push(exists(db.select({ one: sql`1` }).from(userRoles).where(and(eq(userRoles.userId, users.id), eq(userRoles.roleId, f.roleId)))))
    return db.select(selection()).from(users).where(and(...conds)).orderBy(asc(users.id)).limit(limit)
  }
  if (f.roleId) {
    const conds: SQL[] = [eq(userRoles.roleId, f.roleId), gt(userRoles.userId, after)]
    if (f.status) conds.push(eq(users.status, f.status))
    return db.select(selection()).from(userRoles).innerJoin(users, eq(users.id, userRoles.userId)).where(and(...conds)).orderBy(asc(userRoles.userId)).limit(limit)
  }
  const conds: SQL[] = [gt(users.id, after)]
  if (f.status) conds.push(eq(users.status, f.status))
  return db.select(selection()).from(users).where(and(...conds)).orderBy(asc(users.id)).limit(limit)
}

/**
 * The unfiltered page: ids and row versions in id order, through the primary key (each row's `updated_at` read
 * from the table; SQLite: prepared per page size, PostgreSQL: plainPagePg). `after` and `limit` are values or placeholders. Exported for the EXPLAIN tests.
 */
export function plainIdsQuery(db: Db, after: unknown, limit: unknown) {
  return db.select({ id: users.id, updatedAt: users.updatedAt }).from(users).where(gt(users.id, after as string)).orderBy(asc(users.id)).limit(limit as number)
}

/**
 * The same page with the listed columns and versions, read when the view cache lacks any of its entries: a
 * second walk of the same range (a probe per missing id costs twice the walk on SQLite). Exported for the EXPLAIN tests.
 */
export function fullPageQuery(db: Db, after: unknown, limit: unknown) {
  return db.select({ ...selection(), updatedAt: users.updatedAt }).from(users).where(gt(users.id, after as string)).orderBy(asc(users.id)).limit(limit as number)
}

/** PostgreSQL: the two statements of the unfiltered page, prepared once per pool (src/db/tx.ts preparedQuery). */
const plainPagePg = preparedQuery<{ after: string; limit: number }, { id: string; updatedAt: number }[]>((db, p) => plainIdsQuery(db, p('after'), p('limit')))
const fullPagePg = preparedQuery<{ after: string; limit: number }, (ListedRow & { updatedAt: number })[]>((db, p) => fullPageQuery(db, p('after'), p('limit')))

/** The statement for page size `limit` from `bySize`, prepared on its first use. */
function preparedFor<T>(bySize: Map<number, T>, limit: number, prepare: (limit: number) => T): T {
  let s = bySize.get(limit)
  if (s === undefined) bySize.set(limit, (s = prepare(limit)))
  return s
}

/** A user's rendered list entry and the `updated_at` of the row it was rendered from. */
interface CachedView {
  updatedAt: number
  view: UserView
}

export class UsersAdminService {
  /**
   * The unfiltered list's rendered entries, by user id: for display only, never a decision. An entry is used only
   * while its row's `updated_at` is the one the page query returns (every write to a listed column sets it), so a
   * change made anywhere (another instance, the CLI) shows at once. The roles in it are dropped by the same events
   * as the role caches: a user's grant or revocation (`user`), any role change (`role`, `permissions`), the relay's
   * resync; and it lives no longer than the roles it shows may be shown unread (RbacService.listedRoles: at most
   * BULWARK_CACHE_TTL after the user's role ids and each role were read). Bounded by BULWARK_CACHE_MAX_ENTRIES.
   */
  private readonly views: LruCache<string, CachedView>
  /** Bumped on every event that drops views: a page read while one arrived is not kept (it may predate the change). */
  private viewEpoch = 0

  constructor(private readonly deps: UsersAdminDeps) {
    this.views = new LruCache({ ...deps.config.cache, clock: deps.clock })
    deps.invalidation.on((e) => {
      if (e.kind === 'user') {
        this.viewEpoch++
        this.views.delete(e.id)
      } else if (e.kind === 'role' || e.kind === 'permissions') this.clearViews()
    })
  }

  /** Drops every cached list entry (role changes, and the invalidation relay's resync after missed events). */
  clearViews(): void {
    this.viewEpoch++
    this.views.clear()
  }

  /** Hit/miss counters of the list's view cache (for /metrics). */
  viewStats() {
    return this.views.stats()
  }

  /** SQLite: the unfiltered first-and-next pages' ids and versions, the common case, prepared once and read as arrays (PostgreSQL: plainPagePg). */
  // One statement per page size, its LIMIT written into the SQL (src/db/tx.ts literalLimit: a bound LIMIT is
  // compiled again on every execution); pageLimit bounds the sizes, so at most MAX_LIMIT statements of each kind
  // (this and fullPage: 2 × MAX_LIMIT, src/lib/pagination.ts).
  private readonly plainPageSqlite = new Map<number, ReturnType<UsersAdminService['preparePlainPage']>>()
  private preparePlainPage(limit: number) {
    return plainIdsQuery(this.deps.db, sql.placeholder('after'), literalLimit(limit)).prepare()
  }

  /** SQLite: the same page with the listed columns, per page size like plainPage (fullPageQuery). */
  private readonly fullPageSqlite = new Map<number, ReturnType<UsersAdminService['prepareFullPage']>>()
  private prepareFullPage(limit: number) {
    return fullPageQuery(this.deps.db, sql.placeholder('after'), literalLimit(limit)).prepare()
  }

  /**
   * The unfiltered page: ids and `updated_at` in id order through the primary key; when the view cache holds every
   * entry at that version, the page is those entries. Otherwise the page is read again with its columns and
   * that read is the page: cached entries still at their row's version are reused, the others rendered with
   * their roles and kept.
   */
  private async plainItems(after: string, limit: number): Promise<{ items: UserView[]; more: boolean; last: string | undefined }> {
    const epoch = this.viewEpoch
    const keys =
      dialect.name === 'sqlite'
        ? await valuesPrepared(this.deps.db, this.plainPage(limit + 1), { after })
        : (await plainPagePg.all(this.deps.db, { after, limit: limit + 1 })).map((k) => [k.id, k.updatedAt])
    const n = Math.min(keys.length, limit)
    // Each entry looked up once; one at another version than its row's counts as a miss.
    const items: (UserView | undefined)[] = new Array(n)
    let complete = true
    for (let i = 0; i < n; i++) {
      const [id, version] = keys[i]!
      const hit = this.views.getIf(id as string, (v) => v.updatedAt === version)
      if (hit === undefined) complete = false
      else items[i] = hit.view
    }
    if (complete) return { items: items as UserView[], more: keys.length > limit, last: keys[n - 1]?.[0] as string | undefined }
    // The second read is the page: its rows may have changed since the first (then their entries are rendered anew).
    const rows =
      dialect.name === 'sqlite'
        ? (await valuesPrepared(this.deps.db, this.fullPage(limit + 1), { after })).map(fromValues)
        : await fullPagePg.all(this.deps.db, { after, limit: limit + 1 })
    const page = rows.slice(0, limit)
    // The entries the first read found, by id with the version they matched: reused where the second read agrees.
    const held = new Map<string, { version: unknown; view: UserView }>()
    for (let i = 0; i < n; i++) if (items[i] !== undefined) held.set(keys[i]![0] as string, { version: keys[i]![1], view: items[i]! })
    const reuse = (r: ListedRow & { updatedAt: number }) => {
      const h = held.get(r.id)
      return h !== undefined && h.version === r.updatedAt ? h.view : undefined
    }
    const { names, until } = await this.deps.rbac.listedRoles(page.filter((r) => reuse(r) === undefined).map((r) => r.id))
    const keep = epoch === this.viewEpoch
    const now = this.deps.clock.now()
    const out = page.map((r) => {
      const hit = reuse(r)
      if (hit !== undefined) return hit
      const view = toView(r, names.get(r.id) ?? [])
      // No longer than the roles it shows may be shown unread (0: not kept).
      if (keep) this.views.set(r.id, { updatedAt: r.updatedAt, view }, (until.get(r.id) ?? now) - now)
      return view
    })
    return { items: out, more: rows.length > limit, last: page.at(-1)?.id }
  }

  private fullPage(limit: number) {
    return preparedFor(this.fullPageSqlite, limit, (n) => this.prepareFullPage(n))
  }

  private plainPage(limit: number) {
    return preparedFor(this.plainPageSqlite, limit, (n) => this.preparePlainPage(n))
  }

  /** Keyset-paginated users ordered by id; a cursor only continues the same filter. */
  async list(opts: ListOptions): Promise<Page<UserView>> {
    const limit = pageLimit(opts.limit)
    const filter: UserFilter = { q: opts.q || undefined, role: opts.role || undefined, status: opts.status }
    const fkey = filterKey(filter)
    let after = ''
    if (opts.cursor) {
      const raw = unsign(this.deps.keys.cursor, opts.cursor)
      let parsed: unknown
      try {
        parsed = raw === undefined ? undefined : JSON.parse(raw)
      } catch {}
      if (!Array.isArray(parsed) || typeof parsed[0] !== 'string' || parsed[1] !== fkey) throw badRequest('invalid_cursor', 'The cursor is not valid for this list.')
      after = parsed[0]
    }
    let roleId: string | undefined
    if (filter.role) {
      roleId = await this.deps.rbac.roleId(filter.role)
      if (!roleId) return { items: [], nextCursor: null }
    }
    const plain = filter.q === undefined && roleId === undefined && filter.status === undefined
    let items: UserView[]
    let more: boolean
    let last: string | undefined
    if (plain) ({ items, more, last } = await this.plainItems(after, limit))
    else {
      const rows = await listQuery(this.deps.db, { q: filter.q, roleId, status: filter.status }, after, limit + 1)
      const page = rows.slice(0, limit)
      const roleNames = await this.deps.rbac.roleNamesOf(page.map((r) => r.id))
      items = page.map((r) => toView(r, roleNames.get(r.id) ?? []))
      more = rows.length > limit
      last = page.at(-1)?.id
    }
    const nextCursor = more && last ? sign(this.deps.keys.cursor, JSON.stringify([last, fkey])) : null
    return { items, nextCursor }
  }

  /** One user; 404 when unknown. */
  async get(id: string): Promise<UserView> {
    const r = (await this.deps.db.select(selection()).from(users).where(eq(users.id, id)).limit(1))[0]
    if (!r) throw notFound('No such user.')
    return toView(r, (await this.deps.rbac.roleNamesOf([id])).get(id) ?? [])
  }

  /** Renames and/or enables/disables a user below the actor's level; disabling ends every session at once. */
  async patch(actor: Actor, id: string, patch: { name?: string | null; status?: UserStatus }, meta?: RequestMeta): Promise<UserView> {
    const statusChange = patch.status !== undefined
    // Renaming oneself is harmless (it is what PATCH /v1/me does); a status change of oneself is not.
    const target = await this.deps.rbac.authorizeOnUser(actor, id, statusChange ? 'user_status' : 'user_update', meta, { allowSelf: !statusChange })
    const now = this.deps.clock.now()
    let ended: string[] = []
    const disabling = patch.status === 'disabled' && target.status === 'active'
    const refused = await withTransaction(this.deps.db, async (tx) => {
      if (disabling && (await this.deps.rbac.wouldLeaveNoOwner(tx, id))) return true
      const set: { updatedAt: SQL<number>; name?: string | null; status?: UserStatus } = { updatedAt: nextUpdatedAt(now) }
      if (patch.name !== undefined) set.name = patch.name
      if (patch.status !== undefined) set.status = patch.status
      await tx.update(users).set(set).where(eq(users.id, id))
      if (patch.status === 'disabled') ended = await endSessionsInTx(tx, id, now, 'user_disabled')
      return false
    })
    if (refused) return await this.deps.rbac.refuseLastOwner(actor, id, 'user_disable', meta)
    this.emitUser(id, ended)
    if (patch.name !== undefined) await this.deps.audit.record({ type: 'user_updated', outcome: 'success', actorId: actor.userId, targetId: id, details: { fields: ['name'] } }, meta)
    if (statusChange && patch.status !== target.status) {
      await this.deps.audit.record({ type: patch.status === 'disabled' ? 'user_disabled' : 'user_enabled', outcome: 'success', actorId: actor.userId, targetId: id, details: patch.status === 'disabled' ? { sessionsEnded: ended.length } : undefined }, meta)
    }
    return this.get(id)
  }

  /** Lifts every lock (password and MFA) of a user below the actor's level. */
  async unlock(actor: Actor, id: string, meta?: RequestMeta): Promise<void> {
    await this.deps.rbac.authorizeOnUser(actor, id, 'user_unlock', meta)
    const removed = await this.deps.db.delete(lockouts).where(eq(lockouts.userId, id)).returning({ kind: lockouts.kind })
    this.deps.invalidation.emit({ kind: 'user', id })
    await this.deps.audit.record({ type: 'account_unlocked', outcome: 'success', actorId: actor.userId, targetId: id, details: { by: 'admin', cleared: removed.map((r) => r.kind) } }, meta)
  }

  /** Deletes a user below the actor's level: sessions end, personal data goes with the row (FK cascades); security events stay. */
  async delete(actor: Actor, id: string, meta?: RequestMeta): Promise<void> {
    await this.deps.rbac.authorizeOnUser(actor, id, 'user_delete', meta)
    const now = this.deps.clock.now()
    let ended: string[] = []
    const refused = await withTransaction(this.deps.db, async (tx) => {
      if (await this.deps.rbac.wouldLeaveNoOwner(tx, id)) return true
      ended = await endSessionsInTx(tx, id, now, 'user_deleted')
      await tx.delete(users).where(eq(users.id, id))
      return false
    })
    if (refused) return await this.deps.rbac.refuseLastOwner(actor, id, 'user_delete', meta)
    this.emitUser(id, ended)
    await this.deps.audit.record({ type: 'user_deleted', outcome: 'success', actorId: actor.userId, targetId: id, details: { sessionsEnded: ended.length } }, meta)
  }

  /** Ends every session of a user (oneself included, like logout-all); returns how many were active. */
  async endSessions(actor: Actor, id: string, meta?: RequestMeta): Promise<number> {
    await this.deps.rbac.authorizeOnUser(actor, id, 'sessions_revoke', meta, { allowSelf: true })
    const now = this.deps.clock.now()
    const ended = await withTransaction(this.deps.db, async (tx) => await endSessionsInTx(tx, id, now, 'admin_revoked'))
    for (const s of ended) this.deps.invalidation.emit({ kind: 'session', id: s })
    await this.deps.audit.record({ type: 'sessions_revoked', outcome: 'success', actorId: actor.userId, targetId: id, details: { sessionsEnded: ended.length } }, meta)
    return ended.length
  }

  /** Owner-only account recovery: removes another user's second factors and ends their sessions (./factor-reset.ts). */
  async resetFactors(actor: Actor & { authTime: number }, id: string, meta?: RequestMeta): Promise<FactorResetResult> {
    return await resetFactors(this.deps, actor, id, meta)
  }

  private emitUser(id: string, endedSessions: string[]): void {
    for (const s of endedSessions) this.deps.invalidation.emit({ kind: 'session', id: s })
    this.deps.invalidation.emit({ kind: 'user', id })
  }
}

type Tx = import('../../db/client').Tx

/**
 * Ends every live session of a user inside the caller's transaction: marks them revoked and expires their
 * unspent refresh tokens (kept, not deleted, for forensics). Returns the ended session ids; the caller emits
 * `session` invalidations after commit.
 */
export async function endSessionsInTx(tx: Db | Tx, userId: string, now: number, reason: string): Promise<string[]> {
  const ended = (await tx
    .update(sessions)
    .set({ revokedAt: now, revokedReason: reason })
    .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id })
    )
    .map((r) => r.id)
  if (ended.length) {
    await tx.update(refreshTokens)
      .set({ expiresAt: now })
      .where(and(inArray(refreshTokens.sessionId, ended), isNull(refreshTokens.usedAt), gt(refreshTokens.expiresAt, now)))
      
  }
  return ended
}

let unfilteredKey: string | undefined

function filterKey(f: UserFilter): string {
  if (f.q === undefined && f.role === undefined && f.status === undefined) return (unfilteredKey ??= keyOf(f))
  return keyOf(f)
}

function keyOf(f: UserFilter): string {
  return createHash('sha256')
    .update(JSON.stringify([f.q ?? null, f.role ?? null, f.status ?? null]))
    .digest('base64url')
    .slice(0, 12)
}

function toView(r: { id: string; email: string; name: string | null; status: UserStatus; emailVerifiedAt: number | null; createdAt: number }, roleNames: string[]): UserView {
  return {
    id: r.id,
    email: r.email,
    name: r.name,
    status: r.status,
    emailVerified: r.emailVerifiedAt !== null,
    roles: roleNames,
    createdAt: new Date(r.createdAt).toISOString(),
  }
}
