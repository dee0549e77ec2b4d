/**
 * Application permissions: apps register their own `resource:action` permissions (`orders:read`) so that
 * roles can hold them and POST /v1/authz/check can answer for them. They live beside the built-in registry
 * (src/lib/permissions.ts) in one `PermissionRegistry`, and follow the same matching rules (`orders:*`).
 *  - Built-in permission names and every built-in resource (`users`, `roles`, `clients`, `apikeys`…) are
 *    refused (422 `reserved_permission`), so an app's permission never shadows Bulwark's own.
 *  - Deleting one that a role holds is 409 `permission_in_use` unless `cascade`: then it is removed from
 *    those roles (roles at or above the actor's level are refused, as for any role change), audited, and
 *    every permission cache is dropped before the request answers.
 * A role "holds" a permission when it lists the name itself or a pattern on its resource (`orders:*`);
 * global wildcards (`*:*`, `*:read`) hold whatever exists and do not pin anything.
 */
import { conflict, notFound, unprocessable } from '../../lib/errors'
import type { Invalidation } from '../../lib/invalidation'
import { PERMISSIONS, PermissionRegistry, RESERVED_RESOURCES, patternGrants } from '../../lib/permissions'
import type { AuditService, RequestMeta } from '../audit/service'
import type { Clock } from '../../lib/clock'
import type { Actor, RbacService } from './service'
import { AppPermissionStore } from './app-permissions-store'
import type { Db } from '../../db/client'

/** An application permission name: exactly two segments, lower case, no wildcard. */
export const APP_PERMISSION_NAME = /^[a-z][a-z0-9_-]{0,31}:[a-z][a-z0-9_-]{0,31}$/
export const MAX_APP_PERMISSIONS = 1000

export interface PermissionView {
  name: string
  description: string
  builtin: boolean
}

export interface AppPermissionDeps {
  db: Db
  clock: Clock
  audit: Pick<AuditService, 'record'>
  invalidation: Invalidation
  rbac: Pick<RbacService, 'actorView' | 'deny' | 'clearCaches'>
  registry: PermissionRegistry
}

export class AppPermissionService {
  private readonly store: AppPermissionStore

  /** True while this instance emits its own change (the listener then has nothing to reload). */
  private emitting = false

  constructor(private readonly d: AppPermissionDeps) {
    this.store = new AppPermissionStore(d.db)
    // Another instance changed the registry (relayed through Redis): reload it, then drop the caches built on the old one.
    d.invalidation.on((e) => {
      if (e.kind === 'permissions' && !this.emitting) void this.refresh().catch(() => {})
    })
  }

  /** Loads the registry before the first request. */
  async init(): Promise<void> {
    this.d.registry.setApp((await this.store.list()).map((r) => [r.name, r.description]))
  }

  /** Reloads the registry from the database and drops the permission caches (no event: nothing to relay). */
  async refresh(): Promise<void> {
    const rows = await this.store.list()
    this.d.registry.setApp(rows.map((r) => [r.name, r.description]))
    await this.d.rbac.clearCaches()
  }

  private changed(name: string): void {
    this.emitting = true
    try {
      this.d.invalidation.emit({ kind: 'permissions', id: name })
    } finally {
      this.emitting = false
    }
  }

  /** Built-in permissions, then application permissions by name. */
  list(): PermissionView[] {
    return [
      ...Object.entries(PERMISSIONS).map(([name, description]) => ({ name, description, builtin: true })),
      ...[...this.d.registry.app.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, description]) => ({ name, description, builtin: false })),
    ]
  }

  /** Registers an application permission (roles:write). */
  async create(actor: Actor, input: { name: string; description?: string }, meta?: RequestMeta): Promise<PermissionView> {
    const name = input.name
    const description = input.description ?? ''
    if (typeof name !== 'string' || !APP_PERMISSION_NAME.test(name)) throw unprocessable('validation_failed', 'The permission is not valid.', [{ path: '/name', message: 'resource:action, each lower-case letters, digits, - and _, starting with a letter (at most 32 characters)' }])
    if (typeof description !== 'string' || description.length > 500) throw unprocessable('validation_failed', 'The permission is not valid.', [{ path: '/description', message: 'Expected a string of at most 500 characters' }])
    await this.d.rbac.actorView(actor)
    const resource = name.split(':')[0]!
    if (RESERVED_RESOURCES.has(resource)) throw unprocessable('reserved_permission', `${resource} is a resource of Bulwark itself; choose another name for your application's resource.`)
    if (this.d.registry.app.size >= MAX_APP_PERMISSIONS) throw conflict(`At most ${MAX_APP_PERMISSIONS} application permissions can be registered.`)
    const now = this.d.clock.now()
    if (!(await this.store.insert({ name, description, createdBy: actor.userId, createdAt: now }))) throw conflict('This permission is already registered.')
    this.d.registry.setApp([...this.d.registry.app.entries(), [name, description]])
    // Roles holding a global wildcard (`*:*`) now grant it: every cached expansion is stale.
    this.changed(name)
    await this.d.audit.record({ type: 'permission_created', outcome: 'success', actorId: actor.userId, details: { permission: name } }, meta)
    return { name, description, builtin: false }
  }

  /** Deletes an application permission; 409 while a role holds it unless `cascade`. */
  async delete(actor: Actor, name: string, cascade: boolean, meta?: RequestMeta): Promise<void> {
    if (Object.hasOwn(PERMISSIONS, name)) throw conflict('Built-in permissions cannot be deleted.', 'builtin_permission')
    if (!this.d.registry.app.has(name) && !(await this.store.exists(name))) throw notFound('No such application permission.')
    const me = await this.d.rbac.actorView(actor)
    const [resource] = name.split(':')
    const rest = [...this.d.registry.app.keys()].filter((p) => p !== name)
    const held = (await this.store.rolePatterns()).filter((r) => r.permission.split(':')[0] === resource && patternGrants(r.permission, name))
    if (held.length && !cascade) {
      const names = [...new Set(held.map((h) => h.role))].sort()
      throw conflict(`Held by role(s) ${names.join(', ')}; give ?cascade=true to remove it from them.`, 'permission_in_use')
    }
    for (const h of held) if (h.level >= me.level) await this.d.rbac.deny(actor, 'role_level', `Role ${h.role} is at or above your own level.`, { action: 'permission_delete', role: h.role }, meta)
    // The exact name goes; a resource wildcard (`orders:*`) goes only when nothing else would be left for it to match.
    const remove = held.filter((h) => h.permission === name || !rest.some((p) => patternGrants(h.permission, p)))
    await this.store.deleteWithPatterns(name, remove, this.d.clock.now())
    this.d.registry.setApp([...this.d.registry.app.entries()].filter(([k]) => k !== name))
    this.changed(name)
    for (const roleId of new Set(held.map((h) => h.roleId))) this.d.invalidation.emit({ kind: 'role', id: roleId })
    const roles = [...new Set(held.map((h) => h.role))].sort()
    await this.d.audit.record({ type: 'permission_deleted', outcome: 'success', actorId: actor.userId, details: { permission: name, cascade, roles, removedPatterns: remove.map((r) => `${r.role}:${r.permission}`) } }, meta)
  }
}
