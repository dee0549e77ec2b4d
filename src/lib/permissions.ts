/**
 * The permission registry and the matching rules. Every permission a route or service checks is declared
 * here once, with the description `GET /v1/permissions` shows; roles hold *patterns* that must match at
 * least one registered permission, so a typo can never silently grant nothing (or everything).
 *
 * Grammar: `resource:action` or `resource:action:scope` (scope `own` or `any` for owned resources).
 * A pattern may use `*` for one whole segment (`users:*`, `*:read`, `files:*:any`). Matching rules:
 *  - `*` matches exactly one segment;
 *  - a two-segment pattern grants every scope of it: `files:read` grants `files:read:own` and `files:read:any`;
 *  - `:any` implies `:own`: `files:read:any` grants `files:read:own`.
 */
import { notFound } from './errors'

export const PERMISSIONS = {
  'users:read': 'List and read user accounts',
  'users:write': "Change a user's name and status, unlock a locked account",
  'users:delete': 'Delete user accounts and their personal data',
  'roles:read': 'List roles and the permission registry',
  'roles:write': 'Create, change and delete roles below your own level',
  'roles:assign': 'Grant and revoke roles below your own level',
  'sessions:revoke': 'End every session of a user',
  'authz:check': 'Ask whether a user holds a permission (policy decision API for other services)',
  'audit:read': 'Read the security event log and statistics',
  'files:read:own': 'Read your own files',
  'files:read:any': "Read anyone's files",
  'files:write:own': 'Upload your own files and avatar',
  'files:delete:own': 'Delete your own files',
  'files:delete:any': "Delete anyone's files",
  'webhooks:read': 'List webhook endpoints and their delivery log',
  'webhooks:write': 'Create, change, delete webhook endpoints, rotate their secrets and redeliver events',
  'clients:read': 'List and read OAuth clients (service identities)',
  'clients:write': 'Create, change, delete OAuth clients and rotate their secrets, granting only what you hold',
  'apikeys:read': "List everyone's API keys (metadata only)",
  'apikeys:write': "Revoke anyone's API key",
} as const

export type Permission = keyof typeof PERMISSIONS

/** Every registered permission, in declaration order. */
export const ALL_PERMISSIONS = Object.keys(PERMISSIONS) as Permission[]

const SEGMENT = '(?:[a-z][a-z0-9_-]{0,31}|\\*)'
const PATTERN = new RegExp(`^${SEGMENT}:${SEGMENT}(?::(?:own|any|\\*))?$`)

export const isRegistered = (p: string): p is Permission => Object.hasOwn(PERMISSIONS, p)

const seg = (pattern: string, value: string) => pattern === '*' || pattern === value

/** True when the role pattern grants the concrete permission, under the rules in this file's header. */
export function patternGrants(pattern: string, permission: string): boolean {
  const p = pattern.split(':')
  const q = permission.split(':')
  if (!seg(p[0]!, q[0]!) || !seg(p[1]!, q[1]!)) return false
  if (p.length === 2) return q.length === 2 || q.length === 3
  if (p.length !== 3 || q.length !== 3) return false
  return seg(p[2]!, q[2]!) || (p[2] === 'any' && q[2] === 'own')
}

/** The registered permissions a pattern grants (empty for a malformed pattern). */
export function expandPattern(pattern: string): Permission[] {
  if (!PATTERN.test(pattern)) return []
  return ALL_PERMISSIONS.filter((perm) => patternGrants(pattern, perm))
}

/** Why a pattern is not acceptable for a role, or undefined when it is. */
export function patternProblem(pattern: string): string | undefined {
  if (!PATTERN.test(pattern)) return 'must be resource:action or resource:action:scope (scope own or any), with * for a whole segment'
  if (expandPattern(pattern).length === 0) return 'matches no registered permission'
  return undefined
}

/** Whether a permission name (2 or 3 segments, no wildcard) is known, directly or as the base of scoped ones (`files:read`). */
export function isKnownPermission(p: string): boolean {
  if (isRegistered(p)) return true
  return p.split(':').length === 2 && !p.includes('*') && ALL_PERMISSIONS.some((r) => r.startsWith(`${p}:`))
}

/** The part of a principal that permission checks read (the auth plugin's principal satisfies it). */
export interface PermissionHolder {
  userId: string
  permissions: readonly string[]
}

/** True when the holder's effective (already expanded) permissions include `permission`. */
export const holds = (who: PermissionHolder, permission: Permission): boolean => who.permissions.includes(permission)

/**
 * Ownership rule for owned resources: `action` is the base (`files:read`); the owner needs `<action>:own`,
 * anyone else `<action>:any`. Callers answer 404 (never 403) when this is false, so a resource the caller
 * may not see is indistinguishable from one that does not exist.
 */
export function canAccessOwned(who: PermissionHolder, action: string, ownerId: string): boolean {
  if (who.permissions.includes(`${action}:any`)) return true
  return who.userId === ownerId && who.permissions.includes(`${action}:own`)
}

/** Throws 404 `not_found` unless `canAccessOwned`; use it to load owned resources (files, avatars). */
export function ensureCanAccessOwned(who: PermissionHolder, action: string, ownerId: string): void {
  if (!canAccessOwned(who, action, ownerId)) throw notFound()
}

/**
 * Resources that belong to Bulwark itself: an application permission on one of them (`users:export`,
 * `clients:read`) is refused, so an app's permission can never shadow or be mistaken for a built-in one.
 * The list includes resources of integrations that may not be registered in this build.
 */
export const RESERVED_RESOURCES: ReadonlySet<string> = new Set([
  ...ALL_PERMISSIONS.map((p) => p.split(':')[0]!),
  'clients', 'webhooks', 'apikeys', 'keys', 'oauth', 'auth', 'me', 'admin', 'permissions', 'mfa', 'passkeys', 'bulwark', 'system',
])

/**
 * The registry an RBAC service matches patterns against: the built-in permissions above plus the
 * application permissions registered at run time (POST /v1/permissions). The owner of the instance keeps
 * `app` current (src/modules/rbac/app-permissions.ts); matching rules are the same for both kinds.
 * App permission names are typed as `Permission` so the caches' maps hold both kinds.
 */
export class PermissionRegistry {
  /** Application permission name → description. */
  readonly app = new Map<string, string>()
  private allCache: Permission[] | undefined

  /** Replaces the application permissions (after loading them from the database). */
  setApp(entries: Iterable<[string, string]>): void {
    this.app.clear()
    for (const [k, v] of entries) this.app.set(k, v)
    this.allCache = undefined
  }

  /** Built-in permissions first, then application permissions in name order. */
  all(): Permission[] {
    this.allCache ??= [...ALL_PERMISSIONS, ...([...this.app.keys()].sort() as Permission[])]
    return this.allCache
  }

  isRegistered(p: string): p is Permission {
    return isRegistered(p) || this.app.has(p)
  }

  /** The registered permissions (built-in and application) a pattern grants. */
  expand(pattern: string): Permission[] {
    if (!PATTERN.test(pattern)) return []
    return this.all().filter((perm) => patternGrants(pattern, perm))
  }

  problem(pattern: string): string | undefined {
    if (!PATTERN.test(pattern)) return 'must be resource:action or resource:action:scope (scope own or any), with * for a whole segment'
    if (this.expand(pattern).length === 0) return 'matches no registered permission'
    return undefined
  }

  isKnown(p: string): boolean {
    return isKnownPermission(p) || this.app.has(p)
  }
}
