/**
 * Roles, permissions and the no-escalation rules. Effective permissions (union over a user's roles) and
 * the role→permission table are cached in-process behind the Cache interface; every change made here emits
 * an Invalidation event before returning, and the caches listen to that bus, so the next check sees it.
 *
 * Escalation rules (each refusal is a 403 `forbidden` and a `privilege_escalation_denied` security event):
 *  - `role_level`: an actor may only create, edit, delete, grant or revoke roles strictly below their level;
 *  - `target_level`: an actor may only act on users strictly below their level;
 *  - `self`: nobody changes their own roles or status;
 *  - `permission_not_held`: a role cannot be given a permission the actor does not hold;
 *  - `last_owner`: the last active owner cannot lose the role, be disabled or be deleted.
 * A role with administrative permissions requires MFA unless an owner waives it (see ./mfa-waiver.ts:
 * 403 `mfa_waiver_forbidden`, event rule `mfa_waiver`).
 */
import { allPrepared, lockResource, preparedQuery, withTransaction } from '../../db/tx'
import { and, asc, count, desc, eq, sql, type SQL } from 'drizzle-orm'
import type { Db } from '../../db/client'
import { dialect, rolePermissions, roles, userRoles, users } from '../../db/tables'
import type { CoreDeps } from '../../deps'
import { LruCache, type CacheStats } from '../../lib/cache'
import { asyncLruCaches as lruCaches, type AsyncCache as Cache, type AsyncCacheFactory as CacheFactory } from '../../lib/redis-cache'
import { conflict, forbidden, notFound, unprocessable, type FieldError } from '../../lib/errors'
import { newId } from '../../lib/ids'
import type { Invalidation } from '../../lib/invalidation'
import { PermissionRegistry, type Permission } from '../../lib/permissions'
import type { AuditService, RequestMeta } from '../audit/service'
import { decideMfa, recordWaiver } from './mfa-waiver'

/** A drizzle transaction (or the database itself): what functions usable inside a caller's transaction take. */
export type Tx = import('../../db/client').Tx
export type DbOrTx = Db | Tx

export const DEFAULT_ROLE = 'user'
export const OWNER_ROLE = 'owner'
export const ROLE_NAME = /^[a-z][a-z0-9_-]{1,31}$/
export const MAX_LEVEL = 1000

/** Who is acting: the auth plugin's principal satisfies this; levels and permissions are re-read fresh. */
export interface Actor {
  userId: string
}

export type EscalationRule = 'role_level' | 'target_level' | 'self' | 'permission_not_held' | 'last_owner'

export interface Effective {
  status: 'active' | 'disabled'
  /** Role names, highest level first. */
  roles: string[]
  /** Highest role level; 0 without any role. */
  level: number
  /** Registered permissions granted (patterns already expanded). */
  permissions: Permission[]
  /** True when any of the roles requires a second factor. */
  mfaRequired: boolean
}

export interface RoleView {
  name: string
  level: number
  description: string
  builtin: boolean
  mfaRequired: boolean
  permissions: string[]
  createdAt: string
  updatedAt: string
}

export interface RoleInput {
  name: string
  level: number
  permissions: string[]
  description?: string
  mfaRequired?: boolean
}

export type RolePatch = Partial<RoleInput>

const ROLE_FIELDS = new Set(['name', 'level', 'permissions', 'description', 'mfaRequired'])
export const MAX_ROLE_PERMISSIONS = 100
export const MAX_ROLE_DESCRIPTION = 500

/**
 * The second line of defence behind the route schemas: the service itself refuses a role that is not
 * well-formed, so a schema that stops checking (as identifier minification once made it do) cannot
 * store a level of "-50" or 1e309. Returns the field errors; empty when the input is sane.
 */
export function roleInputProblems(input: unknown, partial: boolean): FieldError[] {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return [{ path: '/', message: 'Expected an object' }]
  const v = input as Record<string, unknown>
  const errors: FieldError[] = []
  for (const k of Object.keys(v)) if (!ROLE_FIELDS.has(k)) errors.push({ path: `/${k.slice(0, 64)}`, message: 'Unknown field' })
  const present = (k: string) => v[k] !== undefined
  if (partial && ![...ROLE_FIELDS].some(present)) errors.push({ path: '/', message: 'Give at least one field to change' })
  if (!partial || present('name')) {
    if (typeof v.name !== 'string' || !ROLE_NAME.test(v.name)) errors.push({ path: '/name', message: 'lower-case letters, digits, - and _, 2 to 32 characters, starting with a letter' })
  }
  if (!partial || present('level')) {
    if (typeof v.level !== 'number' || !Number.isSafeInteger(v.level) || v.level < 0 || v.level > MAX_LEVEL) errors.push({ path: '/level', message: `Expected an integer from 0 to ${MAX_LEVEL}` })
  }
  if (!partial || present('permissions')) {
    const p = v.permissions
    if (!Array.isArray(p) || p.length > MAX_ROLE_PERMISSIONS) errors.push({ path: '/permissions', message: `Expected an array of at most ${MAX_ROLE_PERMISSIONS} permission patterns` })
    else p.forEach((x, i) => {
      if (typeof x !== 'string' || x.length < 3 || x.length > 100) errors.push({ path: `/permissions/${i}`, message: 'Expected a permission pattern of 3 to 100 characters' })
    })
  }
  if (present('description') && (typeof v.description !== 'string' || v.description.length > MAX_ROLE_DESCRIPTION)) errors.push({ path: '/description', message: `Expected a string of at most ${MAX_ROLE_DESCRIPTION} characters` })
  if (present('mfaRequired') && typeof v.mfaRequired !== 'boolean') errors.push({ path: '/mfaRequired', message: 'Expected a boolean' })
  return errors.slice(0, 20)
}

/** Throws 422 `validation_failed` (before anything is read or written) when the role input is not sane. */
function assertRoleInput(input: unknown, partial: boolean): void {
  const errors = roleInputProblems(input, partial)
  if (errors.length) throw unprocessable('validation_failed', 'The role is not valid.', errors)
}

export interface CheckResult {
  allowed: boolean
  reason: string
}

interface RoleEntry {
  id: string
  name: string
  level: number
  mfaRequired: boolean
  /** Registered permission → the pattern of this role that grants it. */
  grants: Map<Permission, string>
  /** When it was read from the database (the clock's ms): what is built from it lives at most BULWARK_CACHE_TTL past that. */
  readAt?: number
}

interface UserEntry {
  status: 'active' | 'disabled'
  roleIds: string[]
  /** Effective view computed at role-table generation `gen`. */
  memo?: { gen: number; eff: Effective; grants: Map<Permission, { role: string; pattern: string }> }
}

export interface RbacDeps extends Pick<CoreDeps, 'db' | 'clock' | 'config'> {
  audit: Pick<AuditService, 'record'>
  invalidation: Invalidation
  /** Built-in plus application permissions; a built-in-only registry when not given. */
  registry?: PermissionRegistry
  /** Builds the caches (the composition root's one factory; an in-process LRU on the clock when absent). */
  caches?: CacheFactory
}

/** Inserts a role for a user by name (no rules applied); usable inside the caller's transaction. Returns whether it was new. */
export async function assignRoleInTx(tx: DbOrTx, userId: string, roleName: string, now: number, grantedBy: string | null = null): Promise<boolean> {
  const role = (await tx.select({ id: roles.id }).from(roles).where(eq(roles.name, roleName)).limit(1))[0]
  if (!role) throw new Error(`role ${roleName} does not exist`)
  const added = await tx.insert(userRoles).values({ userId, roleId: role.id, grantedBy, createdAt: now }).onConflictDoNothing().returning({ userId: userRoles.userId })
  return added.length > 0
}

/** Gives a new account the default `user` role; call it inside the registration transaction. */
export async function assignDefaultRole(tx: DbOrTx, userId: string, now: number): Promise<void> {
  await assignRoleInTx(tx, userId, DEFAULT_ROLE, now)
}

/**
 * PostgreSQL: the role ids each of a page of users holds, prepared once (src/db/tx.ts preparedQuery), the
 * ids as one JSON-array parameter like SQLite's json_each statement (an IN list would be a new statement
 * for every page size). Cast through text: typed jsonb, Bun's client would send the string as a JSON string.
 */
const heldRolesPg = preparedQuery<{ ids: string }, { user: string; roleId: string }[]>((db, p) =>
  db
    .select({ user: userRoles.userId, roleId: userRoles.roleId })
    .from(userRoles)
    .where(sql`${userRoles.userId} IN (SELECT jsonb_array_elements_text(${p('ids')}::text::jsonb))`),
)

export class RbacService {
  private readonly userCache: Cache<string, UserEntry>
  private readonly roleCache: Cache<string, RoleEntry>
  /** Bumped on every role change: a user's memoised effective view is valid only for the generation it was built at. */
  private gen = 0
  /**
   * Bumped on every change to a user (and on clearCaches): a user's roles read from the database are kept only
   * when no such change was heard of while the read ran, so a grant or revocation that lands mid-read is not
   * overwritten by the older read (until the TTL).
   */
  private userEpoch = 0
  /**
   * Role ids held, by user, for list views (`roleNamesOf`): in-process only, bounded and on the TTL like the
   * other caches, dropped with the user cache. Never used for a decision: permissions come from `userCache`.
   */
  private readonly heldCache: LruCache<string, string[]>
  readonly registry: PermissionRegistry

  constructor(private readonly deps: RbacDeps) {
    this.registry = deps.registry ?? new PermissionRegistry()
    const caches = deps.caches ?? lruCaches({ ...deps.config.cache, clock: deps.clock })
    this.userCache = caches<string, UserEntry>('rbac-users')
    this.roleCache = caches<string, RoleEntry>('rbac-roles')
    this.heldCache = new LruCache({ ...deps.config.cache, clock: deps.clock })
    deps.invalidation.on((e) => {
      if (e.kind === 'user') {
        this.userEpoch++
        this.heldCache.delete(e.id)
        void this.userCache.delete(e.id)
      } else if (e.kind === 'permissions') void this.clearCaches()
      else if (e.kind === 'role') {
        void this.roleCache.delete(e.id)
        this.gen++
      }
    })
  }

  /** Hit/miss counters of the caches (for /metrics). */
  stats(): { effective: CacheStats; roles: CacheStats; held: CacheStats } {
    return { effective: this.userCache.stats(), roles: this.roleCache.stats(), held: this.heldCache.stats() }
  }

  /** Drops both caches (the invalidation relay calls it after missing events while Redis was away). */
  async clearCaches(): Promise<void> {
    // Both first: a read in flight that finishes while the (Redis) clears run is not kept either.
    this.userEpoch++
    this.gen++
    this.heldCache.clear()
    await this.userCache.clear()
    await this.roleCache.clear()
  }

  // ---------------------------------------------------------------- effective permissions

  /** Roles, level, permissions and status of a user (cached); null for an unknown user. */
  async effective(userId: string): Promise<Effective | null> {
    return (await this.resolve(userId))?.eff ?? null
  }

  /** True when any role of the user requires a second factor. */
  async mfaRequiredFor(userId: string): Promise<boolean> {
    return (await this.effective(userId))?.mfaRequired ?? false
  }

  private async resolve(userId: string): Promise<NonNullable<UserEntry['memo']> | null> {
    let entry = await this.userCache.get(userId)
    if (!entry) {
      const epoch = this.userEpoch
      const loaded = await this.loadUser(userId)
      if (!loaded) return null
      entry = loaded
      if (epoch === this.userEpoch) this.userCache.set(userId, entry)
    }
    if (entry.memo && entry.memo.gen === this.gen) return entry.memo
    const gen = this.gen
    const entries = (await Promise.all(entry.roleIds.map((id) => this.role(id)))).filter((r): r is RoleEntry => r !== undefined)
    entries.sort((a, b) => b.level - a.level || a.name.localeCompare(b.name))
    const grants = new Map<Permission, { role: string; pattern: string }>()
    for (const r of entries) for (const [perm, pattern] of r.grants) if (!grants.has(perm)) grants.set(perm, { role: r.name, pattern })
    const eff: Effective = {
      status: entry.status,
      roles: entries.map((r) => r.name),
      level: entries[0]?.level ?? 0,
      permissions: this.registry.all().filter((p) => grants.has(p)),
      mfaRequired: entries.some((r) => r.mfaRequired),
    }
    entry.memo = { gen, eff, grants }
    return entry.memo
  }

  private async loadUser(userId: string): Promise<UserEntry | undefined> {
    const u = (await this.deps.db.select({ status: users.status }).from(users).where(eq(users.id, userId)).limit(1))[0]
    if (!u) return undefined
    const rows = await this.deps.db.select({ roleId: userRoles.roleId }).from(userRoles).where(eq(userRoles.userId, userId))
    return { status: u.status, roleIds: rows.map((r) => r.roleId) }
  }

  private async role(id: string): Promise<RoleEntry | undefined> {
    const hit = await this.roleCache.get(id)
    if (hit) return hit
    const gen = this.gen
    const readAt = this.deps.clock.now()
    const r = (await this.deps.db.select().from(roles).where(eq(roles.id, id)).limit(1))[0]
    if (!r) return undefined
    const patterns = await this.deps.db.select({ p: rolePermissions.permission }).from(rolePermissions).where(eq(rolePermissions.roleId, id))
    const grants = new Map<Permission, string>()
    for (const { p } of patterns) for (const perm of this.registry.expand(p)) if (!grants.has(perm)) grants.set(perm, p)
    const entry: RoleEntry = { id: r.id, name: r.name, level: r.level, mfaRequired: r.mfaRequired, grants, readAt }
    // A role change heard of while this read ran may postdate it: answer with what was read, but do not keep it
    // (it would stand until the TTL over the change).
    if (gen === this.gen) this.roleCache.set(id, entry)
    return entry
  }

  /**
   * The policy decision: may `userId` do `permission` (optionally on a resource owned by `resourceOwnerId`)?
   * `permission` is a registered permission or the base of scoped ones (`files:read`: owner needs `:own`, others `:any`).
   * The reason names the rule that decided.
   */
  async check(userId: string, permission: string, resourceOwnerId?: string): Promise<CheckResult> {
    if (!this.registry.isKnown(permission)) throw unprocessable('unknown_permission', `${permission} is not a registered permission; see GET /v1/permissions.`)
    const r = await this.resolve(userId)
    if (!r) return { allowed: false, reason: 'unknown user' }
    if (r.eff.status !== 'active') return { allowed: false, reason: 'user disabled' }
    const via = (p: string) => {
      const g = r.grants.get(p as Permission)
      return g ? `granted by role ${g.role} via ${g.pattern}` : undefined
    }
    const parts = permission.split(':')
    const base = parts.slice(0, 2).join(':')
    const scope = parts[2]
    const isOwner = resourceOwnerId !== undefined && resourceOwnerId === userId
    const anyPerm = `${base}:any`
    const ownPerm = `${base}:own`
    if (scope === undefined && !this.registry.isRegistered(permission)) {
      // Base of scoped permissions: the owner may use `:own`, everyone may use `:any`.
      if (isOwner && this.registry.isRegistered(ownPerm) && via(ownPerm)) return { allowed: true, reason: `owner match; ${via(ownPerm)}` }
      if (this.registry.isRegistered(anyPerm) && via(anyPerm)) return { allowed: true, reason: via(anyPerm)! }
      return { allowed: false, reason: resourceOwnerId !== undefined && !isOwner ? `not the owner and no role grants ${anyPerm}` : `no role grants ${isOwner ? ownPerm : anyPerm}` }
    }
    if (scope === 'own' && resourceOwnerId !== undefined && !isOwner) {
      if (this.registry.isRegistered(anyPerm) && via(anyPerm)) return { allowed: true, reason: via(anyPerm)! }
      return { allowed: false, reason: `not the owner and no role grants ${this.registry.isRegistered(anyPerm) ? anyPerm : permission.replace(/:own$/, ':any')}` }
    }
    const v = via(permission)
    if (v) return { allowed: true, reason: scope === 'own' && isOwner ? `owner match; ${v}` : v }
    return { allowed: false, reason: `no role grants ${permission}` }
  }

  // ---------------------------------------------------------------- rules shared with the users admin

  /** The actor's fresh effective view; a disabled or unknown actor may do nothing. */
  async actorView(actor: Actor): Promise<Effective> {
    const eff = await this.effective(actor.userId)
    if (!eff || eff.status !== 'active') throw forbidden()
    return eff
  }

  /** Records the refusal as a security event and throws 403 `forbidden`. */
  async deny(actor: Actor, rule: EscalationRule, detail: string, ctx: { action: string; targetId?: string; role?: string }, meta?: RequestMeta): Promise<never> {
    await this.deps.audit.record(
      { type: 'privilege_escalation_denied', outcome: 'failure', actorId: actor.userId, targetId: ctx.targetId ?? null, details: { rule, action: ctx.action, ...(ctx.role ? { role: ctx.role } : {}) } },
      meta,
    )
    throw forbidden(detail)
  }

  /**
   * Checks that `actor` may act on user `targetId` (exists, strictly lower level, not themselves unless
   * `allowSelf`); returns the target's effective view. Unknown users are 404.
   */
  async authorizeOnUser(actor: Actor, targetId: string, action: string, meta?: RequestMeta, opts: { allowSelf?: boolean } = {}): Promise<Effective> {
    const me = await this.actorView(actor)
    const target = await this.effective(targetId)
    if (!target) throw notFound('No such user.')
    if (targetId === actor.userId) {
      if (opts.allowSelf) return target
      await this.deny(actor, 'self', 'You cannot do this to your own account.', { action, targetId }, meta)
    }
    if (target.level >= me.level) await this.deny(actor, 'target_level', 'The user has a role at or above your own level.', { action, targetId }, meta)
    return target
  }

  /**
   * Inside a write's transaction: whether taking `targetId` out (role revoked, disabled, deleted) would leave no
   * active owner. Takes the owners lock first (advisory lock on PostgreSQL; the one writer on SQLite) and reads
   * the database, not the cache, so two admins on two instances cannot each remove one of the last two owners.
   * The caller refuses after the transaction (its refusal event must not roll back with it).
   */
  async wouldLeaveNoOwner(tx: DbOrTx, targetId: string): Promise<boolean> {
    await lockResource(tx, 'owners')
    const held = await tx
      .select({ id: users.id })
      .from(userRoles)
      .innerJoin(roles, eq(roles.id, userRoles.roleId))
      .innerJoin(users, eq(users.id, userRoles.userId))
      .where(and(eq(userRoles.userId, targetId), eq(roles.name, OWNER_ROLE), eq(users.status, 'active')))
      .limit(1)
    if (held.length === 0) return false
    return (await this.activeOwnerCount(tx)) <= 1
  }

  /** Refuses the removal of the last active owner (403, recorded); call after `wouldLeaveNoOwner` said so. */
  async refuseLastOwner(actor: Actor, targetId: string, action: string, meta?: RequestMeta): Promise<never> {
    return await this.deny(actor, 'last_owner', 'The last active owner cannot be removed, disabled or deleted.', { action, targetId }, meta)
  }

  /** Active accounts holding the owner role (the start banner says how to create one when there is none). */
  async activeOwnerCount(db: DbOrTx = this.deps.db): Promise<number> {
    const row = (await db
      .select({ n: count() })
      .from(userRoles)
      .innerJoin(roles, eq(roles.id, userRoles.roleId))
      .innerJoin(users, eq(users.id, userRoles.userId))
      .where(and(eq(roles.name, OWNER_ROLE), eq(users.status, 'active')))
      .limit(1))[0]
    return row?.n ?? 0
  }

  // ---------------------------------------------------------------- roles

  /** Every role, highest level first. */
  async listRoles(): Promise<RoleView[]> {
    const rows = await this.deps.db.select().from(roles).orderBy(desc(roles.level), asc(roles.name))
    const perms = await this.deps.db.select().from(rolePermissions).orderBy(asc(rolePermissions.permission))
    const byRole = new Map<string, string[]>()
    for (const p of perms) byRole.set(p.roleId, [...(byRole.get(p.roleId) ?? []), p.permission])
    return rows.map((r) => this.view(r, byRole.get(r.id) ?? []))
  }

  /** One role by name; 404 when unknown. */
  async getRole(name: string): Promise<RoleView> {
    const r = await this.roleRow(name)
    const perms = await this.deps.db.select({ p: rolePermissions.permission }).from(rolePermissions).where(eq(rolePermissions.roleId, r.id)).orderBy(asc(rolePermissions.permission))
    return this.view(r, perms.map((x) => x.p))
  }

  private view(r: typeof roles.$inferSelect, permissions: string[]): RoleView {
    return {
      name: r.name,
      level: r.level,
      description: r.description,
      builtin: r.builtin,
      mfaRequired: r.mfaRequired,
      permissions,
      createdAt: new Date(r.createdAt).toISOString(),
      updatedAt: new Date(r.updatedAt).toISOString(),
    }
  }

  private async roleRow(name: string) {
    const r = (await this.deps.db.select().from(roles).where(eq(roles.name, name)).limit(1))[0]
    if (!r) throw notFound('No such role.')
    return r
  }

  /** 422 for malformed or unmatched patterns; 403 (+event) for patterns granting what the actor does not hold. */
  private async checkPatterns(actor: Actor, me: Effective, patterns: string[], action: string, role: string, meta?: RequestMeta): Promise<void> {
    const errors: FieldError[] = []
    patterns.forEach((p, i) => {
      const problem = this.registry.problem(p)
      if (problem) errors.push({ path: `/permissions/${i}`, message: `${p.slice(0, 64)}: ${problem}` })
    })
    if (errors.length) throw unprocessable('invalid_permission', 'A permission is not valid.', errors)
    const held = new Set<string>(me.permissions)
    for (const p of patterns) {
      const missing = this.registry.expand(p).filter((perm) => !held.has(perm))
      if (missing.length) await this.deny(actor, 'permission_not_held', `You cannot grant ${p}: you do not hold ${missing.join(', ')}.`, { action, role }, meta)
    }
  }

  /**
   * The no-escalation rules for giving a non-user principal (an OAuth client) roles and permission patterns:
   * every role strictly below the actor's level, every pattern held by the actor (403 + event otherwise,
   * 422 for a malformed pattern, 404 for an unknown role). Returns the role ids.
   */
  async assertMayGrant(actor: Actor, roleNames: readonly string[], patterns: readonly string[], action: string, subject: string, meta?: RequestMeta): Promise<string[]> {
    const me = await this.actorView(actor)
    const ids: string[] = []
    for (const name of roleNames) {
      const r = await this.roleRow(name)
      await this.checkRoleLevel(actor, me, r.level, action, name, meta)
      ids.push(r.id)
    }
    await this.checkPatterns(actor, me, [...patterns], action, subject, meta)
    return ids
  }

  /** Refuses (403 + event `target_level`) when a principal of `level` holding `permissions` is not strictly below the actor, or holds what the actor does not. */
  async assertAbove(actor: Actor, level: number, permissions: readonly string[], action: string, targetId: string, meta?: RequestMeta): Promise<void> {
    const me = await this.actorView(actor)
    const held = new Set<string>(me.permissions)
    if (level >= me.level || permissions.some((p) => !held.has(p))) await this.deny(actor, 'target_level', 'It holds a role or permission at or above your own.', { action, targetId }, meta)
  }

  /** Names, highest level and expanded permissions of a set of roles (cached like a user's). */
  async rolesGrant(roleIds: readonly string[]): Promise<{ roles: string[]; level: number; permissions: Set<Permission> }> {
    const entries = (await Promise.all(roleIds.map((id) => this.role(id)))).filter((r): r is RoleEntry => r !== undefined)
    entries.sort((a, b) => b.level - a.level || a.name.localeCompare(b.name))
    const permissions = new Set<Permission>()
    for (const r of entries) for (const p of r.grants.keys()) permissions.add(p)
    return { roles: entries.map((r) => r.name), level: entries[0]?.level ?? 0, permissions }
  }

  private async checkRoleLevel(actor: Actor, me: Effective, level: number, action: string, role: string, meta?: RequestMeta): Promise<void> {
    if (level >= me.level) await this.deny(actor, 'role_level', 'The role is at or above your own level.', { action, role }, meta)
  }

  /** Creates a role strictly below the actor's level holding only permissions the actor holds. */
  async createRole(actor: Actor, input: RoleInput, meta?: RequestMeta): Promise<RoleView> {
    assertRoleInput(input, false)
    const me = await this.actorView(actor)
    await this.checkRoleLevel(actor, me, input.level, 'role_create', input.name, meta)
    const patterns = [...new Set(input.permissions)]
    await this.checkPatterns(actor, me, patterns, 'role_create', input.name, meta)
    const mfa = await decideMfa(this.deps.audit, { userId: actor.userId, isOwner: me.roles.includes(OWNER_ROLE) }, input.name, 'role_create', { patterns, requested: input.mfaRequired }, undefined, meta)
    const now = this.deps.clock.now()
    const id = newId()
    await withTransaction(this.deps.db, async (tx) => {
      if ((await tx.select({ id: roles.id }).from(roles).where(eq(roles.name, input.name)).limit(1))[0]) throw conflict('A role with this name exists.')
      await tx.insert(roles).values({ id, name: input.name, level: input.level, description: input.description ?? '', mfaRequired: mfa.mfaRequired, builtin: false, createdAt: now, updatedAt: now })
      if (patterns.length) await tx.insert(rolePermissions).values(patterns.map((permission) => ({ roleId: id, permission })))
    })
    this.deps.invalidation.emit({ kind: 'role', id })
    await this.deps.audit.record({ type: 'role_created', outcome: 'success', actorId: actor.userId, details: { role: input.name, level: input.level, permissions: patterns, mfaRequired: mfa.mfaRequired } }, meta)
    if (mfa.waived) await recordWaiver(this.deps.audit, actor.userId, input.name, mfa.admin, meta)
    return await this.getRole(input.name)
  }

  /** Changes a role below the actor's level; built-in names are fixed; added permissions must be held by the actor. */
  async patchRole(actor: Actor, name: string, patch: RolePatch, meta?: RequestMeta): Promise<RoleView> {
    assertRoleInput(patch, true)
    const me = await this.actorView(actor)
    const r = await this.roleRow(name)
    await this.checkRoleLevel(actor, me, r.level, 'role_update', name, meta)
    if (patch.level !== undefined) await this.checkRoleLevel(actor, me, patch.level, 'role_update', name, meta)
    const newName = patch.name ?? r.name
    if (newName !== r.name) {
      if (r.builtin) throw conflict('Built-in role names cannot change.', 'builtin_role')
    }
    let patterns: string[] | undefined
    const current = new Set((await this.deps.db.select({ p: rolePermissions.permission }).from(rolePermissions).where(eq(rolePermissions.roleId, r.id))).map((x) => x.p))
    if (patch.permissions) {
      patterns = [...new Set(patch.permissions)]
      // Only additions are checked against the actor's own permissions: removing is never an escalation.
      await this.checkPatterns(actor, me, patterns.filter((p) => !current.has(p)), 'role_update', name, meta)
    }
    const mfa = await decideMfa(this.deps.audit, { userId: actor.userId, isOwner: me.roles.includes(OWNER_ROLE) }, name, 'role_update', { patterns: patterns ?? [...current], requested: patch.mfaRequired }, { patterns: [...current], mfaRequired: r.mfaRequired }, meta)
    const now = this.deps.clock.now()
    await withTransaction(this.deps.db, async (tx) => {
      if (newName !== r.name && (await tx.select({ id: roles.id }).from(roles).where(eq(roles.name, newName)).limit(1))[0]) throw conflict('A role with this name exists.')
      await tx.update(roles)
        .set({
          name: newName,
          level: patch.level ?? r.level,
          description: patch.description ?? r.description,
          mfaRequired: mfa.mfaRequired,
          updatedAt: now,
        })
        .where(eq(roles.id, r.id))
        
      if (patterns) {
        await tx.delete(rolePermissions).where(eq(rolePermissions.roleId, r.id))
        if (patterns.length) await tx.insert(rolePermissions).values(patterns.map((permission) => ({ roleId: r.id, permission })))
      }
    })
    this.deps.invalidation.emit({ kind: 'role', id: r.id })
    await this.deps.audit.record({ type: 'role_updated', outcome: 'success', actorId: actor.userId, details: { role: name, ...patch, mfaRequired: mfa.mfaRequired } }, meta)
    if (mfa.waived) await recordWaiver(this.deps.audit, actor.userId, newName, mfa.admin, meta)
    return await this.getRole(newName)
  }

  /** Deletes a non-built-in role below the actor's level; refused while assigned unless `reassign` names a role to move its users to. */
  async deleteRole(actor: Actor, name: string, reassign?: string, meta?: RequestMeta): Promise<void> {
    const me = await this.actorView(actor)
    const r = await this.roleRow(name)
    if (r.builtin) throw conflict('Built-in roles cannot be deleted.', 'builtin_role')
    await this.checkRoleLevel(actor, me, r.level, 'role_delete', name, meta)
    const holders = (await this.deps.db.select({ userId: userRoles.userId }).from(userRoles).where(eq(userRoles.roleId, r.id))).map((x) => x.userId)
    let target: typeof roles.$inferSelect | undefined
    if (holders.length) {
      if (!reassign) throw conflict(`The role is held by ${holders.length} user(s); give ?reassign=<role> to move them.`, 'role_in_use')
      if (reassign === name) throw unprocessable('validation_failed', 'reassign must name another role.')
      target = await this.roleRow(reassign)
      await this.checkRoleLevel(actor, me, target.level, 'role_delete', reassign, meta)
      for (const u of holders) {
        if (u === actor.userId) await this.deny(actor, 'self', 'You cannot change your own roles.', { action: 'role_delete', targetId: u, role: name }, meta)
        const eff = await this.effective(u)
        if (eff && eff.level >= me.level) await this.deny(actor, 'target_level', 'A holder of the role has a role at or above your own level.', { action: 'role_delete', targetId: u, role: name }, meta)
      }
    }
    const now = this.deps.clock.now()
    const checked = new Set(holders)
    const done = await withTransaction(this.deps.db, async (tx) => {
      // The holders again, in the transaction: one granted the role since the checks above would lose it without
      // a `user` event (and, with reassign, without the new role), and has not been checked against the actor.
      const current = (await tx.select({ userId: userRoles.userId }).from(userRoles).where(eq(userRoles.roleId, r.id))).map((x) => x.userId)
      if (current.some((u) => !checked.has(u))) return null
      if (target && current.length) {
        await tx.insert(userRoles).values(current.map((userId) => ({ userId, roleId: target.id, grantedBy: actor.userId, createdAt: now }))).onConflictDoNothing()
        await tx.delete(userRoles).where(eq(userRoles.roleId, r.id))
      }
      await tx.delete(roles).where(eq(roles.id, r.id))
      return current
    })
    if (done === null) throw conflict('The role was granted meanwhile; try again.', 'role_in_use')
    this.deps.invalidation.emit({ kind: 'role', id: r.id })
    for (const u of holders) this.deps.invalidation.emit({ kind: 'user', id: u })
    await this.deps.audit.record({ type: 'role_deleted', outcome: 'success', actorId: actor.userId, details: { role: name, reassignedTo: target?.name, users: holders.length } }, meta)
  }

  /** Grants a role below the actor's level to a user below the actor's level (never oneself). Idempotent. */
  async grantRole(actor: Actor, userId: string, roleName: string, meta?: RequestMeta): Promise<void> {
    const me = await this.actorView(actor)
    const r = await this.roleRow(roleName)
    await this.authorizeOnUser(actor, userId, 'role_grant', meta)
    await this.checkRoleLevel(actor, me, r.level, 'role_grant', roleName, meta)
    const added = await assignRoleInTx(this.deps.db, userId, roleName, this.deps.clock.now(), actor.userId)
    this.deps.invalidation.emit({ kind: 'user', id: userId })
    if (added) await this.deps.audit.record({ type: 'role_granted', outcome: 'success', actorId: actor.userId, targetId: userId, details: { role: roleName } }, meta)
  }

  /** Revokes a role (same rules as granting; the last active owner keeps theirs). Idempotent. */
  async revokeRole(actor: Actor, userId: string, roleName: string, meta?: RequestMeta): Promise<void> {
    const me = await this.actorView(actor)
    const r = await this.roleRow(roleName)
    await this.authorizeOnUser(actor, userId, 'role_revoke', meta)
    await this.checkRoleLevel(actor, me, r.level, 'role_revoke', roleName, meta)
    const removed = await withTransaction(this.deps.db, async (tx) => {
      if (roleName === OWNER_ROLE && (await this.wouldLeaveNoOwner(tx, userId))) return null
      return await tx.delete(userRoles).where(and(eq(userRoles.userId, userId), eq(userRoles.roleId, r.id))).returning({ userId: userRoles.userId })
    })
    if (removed === null) return await this.refuseLastOwner(actor, userId, 'role_revoke', meta)
    this.deps.invalidation.emit({ kind: 'user', id: userId })
    if (removed.length > 0) await this.deps.audit.record({ type: 'role_revoked', outcome: 'success', actorId: actor.userId, targetId: userId, details: { role: roleName } }, meta)
  }

  /**
   * Grants a role with no rules applied, for trusted system callers only (first-owner bootstrap, `bulwark admin create`).
   * Pass `tx` to run inside the caller's transaction; the invalidation is then emitted before the caller commits,
   * so a read of the user in between would be cached with the old roles until the TTL: such a caller must emit
   * `{ kind: 'user', id }` again after its commit (no caller passes `tx` today).
   */
  async assignSystem(userId: string, roleName: string, tx?: Tx): Promise<void> {
    const added = await assignRoleInTx(tx ?? this.deps.db, userId, roleName, this.deps.clock.now())
    this.deps.invalidation.emit({ kind: 'user', id: userId })
    if (added) await this.deps.audit.record({ type: 'role_granted', outcome: 'success', actorId: null, targetId: userId, details: { role: roleName, by: 'system' } })
  }

  /** Role names of several users at once (highest level first), for list views. */
  async roleNamesOf(userIds: string[]): Promise<Map<string, string[]>> {
    return (await this.listedRoles(userIds)).names
  }

  /**
   * Role names of several users at once (highest level first), and until when (the clock's ms) each user's may
   * be shown without reading them again: the earlier of the expiry of the user's role ids in `heldCache` and
   * BULWARK_CACHE_TTL past the reading of each of those roles (now, when the ids were not kept).
   */
  async listedRoles(userIds: string[]): Promise<{ names: Map<string, string[]>; until: Map<string, number> }> {
    const out = new Map<string, string[]>()
    const until = new Map<string, number>()
    if (!userIds.length) return { names: out, until }
    // Which role ids each user holds: kept ones from heldCache, the rest in one statement (SQLite: prepared
    // once, the ids as one JSON-array parameter, answered by position); the roles' names and levels come from
    // the role cache, like a principal's roles, so the statement returns no strings but the role ids.
    const held: { user: string; roleId: string }[] = []
    const missing: string[] = []
    const unique = new Set(userIds)
    for (const id of unique) {
      const kept = this.heldCache.get(id)
      if (kept === undefined) missing.push(id)
      else for (const roleId of kept) held.push({ user: id, roleId })
    }
    if (missing.length > 0) {
      const epoch = this.userEpoch
      const read = await this.readHeld(missing)
      if (epoch === this.userEpoch) {
        const byUser = new Map<string, string[]>(missing.map((id) => [id, []]))
        for (const h of read) byUser.get(h.user)?.push(h.roleId)
        for (const [id, roleIds] of byUser) this.heldCache.set(id, roleIds)
      }
      held.push(...read)
    }
    const byId = new Map<string, RoleEntry | undefined>()
    for (const h of held) if (!byId.has(h.roleId)) byId.set(h.roleId, undefined)
    for (const id of byId.keys()) byId.set(id, await this.role(id))
    const entries = new Map<string, RoleEntry[]>()
    for (const h of held) {
      const r = byId.get(h.roleId)
      if (!r) continue
      const list = entries.get(h.user)
      if (list) list.push(r)
      else entries.set(h.user, [r])
    }
    // Highest level first, then by name in binary order (what ORDER BY level DESC, name gives).
    for (const [user, list] of entries) out.set(user, list.sort((x, y) => y.level - x.level || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0)).map((r) => r.name))
    const now = this.deps.clock.now()
    const ttl = this.deps.config.cache.ttlMs
    for (const id of unique) {
      let t = now + this.heldCache.remainingMs(id)
      for (const r of entries.get(id) ?? []) t = Math.min(t, (r.readAt ?? 0) + ttl)
      until.set(id, t)
    }
    return { names: out, until }
  }

  /** (user, role id) for every role the users hold, from the database. */
  private async readHeld(ids: string[]): Promise<{ user: string; roleId: string }[]> {
    return dialect.name === 'sqlite'
      ? (await allPrepared(this.deps.db, (this.heldRolesStmt ??= this.heldRolesQuery()), { ids: JSON.stringify(ids) })).map((r) => ({ user: ids[r.i]!, roleId: r.roleId }))
      : await heldRolesPg.all(this.deps.db, { ids: JSON.stringify(ids) })
  }

  private heldRolesStmt: ReturnType<RbacService['heldRolesQuery']> | undefined

  /** SQLite: (position in the JSON array `ids`, role id) for every role the users at those positions hold. */
  private heldRolesQuery() {
    return this.deps.db
      .select({ i: sql<number>`j.key`, roleId: userRoles.roleId })
      .from(sql`json_each(${sql.placeholder('ids')}) j`)
      .innerJoin(userRoles, sql`${userRoles.userId} = j.value`)
      .prepare()
  }

  /** Id of a role by name, or undefined. */
  async roleId(name: string): Promise<string | undefined> {
    return (await this.deps.db.select({ id: roles.id }).from(roles).where(eq(roles.name, name)).limit(1))[0]?.id
  }
}
