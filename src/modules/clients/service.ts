/**
 * OAuth 2.0 clients: service identities that authenticate with a secret (RFC 6749 §2.3.1) or a signed
 * JWT (private_key_jwt, RFC 7523 §2.2 / OIDC Core §9) and hold roles and permission patterns like a user.
 * Giving a client roles or permissions follows the RBAC no-escalation rules (src/modules/rbac/service.ts):
 * roles strictly below the creator's level, patterns the creator holds; changing, rotating or deleting a
 * client needs a level above it and every permission it holds (else its secret would be an escalation).
 * Secrets start with `bwcs_` (recognisable by secret scanners), are shown once and stored only as keyed
 * hashes, compared in constant time; a rotation keeps the previous secret working for a bounded overlap.
 */
import { importJWK, type JWK } from 'jose'
import type { CoreDeps } from '../../deps'
import { hashToken, randomToken, safeEqual } from '../../lib/crypto'
import { notFound, unprocessable, type FieldError } from '../../lib/errors'
import type { Invalidation } from '../../lib/invalidation'
import { LruCache, type CacheStats } from '../../lib/cache'
import { decodeCursor, encodeCursor } from '../../lib/pagination'
import { expandPattern, type Permission } from '../../lib/permissions'
import { parseDuration } from '../../config'
import type { AuditService, RequestMeta } from '../audit/service'
import type { Actor, RbacService } from '../rbac/service'
import { ClientStore, type ClientRow } from './store'

export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const
export type AuthMethod = (typeof AUTH_METHODS)[number]
/** Signature algorithms accepted on client assertions (advertised as token_endpoint_auth_signing_alg_values_supported). */
export const ASSERTION_ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const
export const CLIENT_ID_PREFIX = 'bwc_'
export const SECRET_PREFIX = 'bwcs_'
/** Longest overlap of an old secret after a rotation. */
export const MAX_OVERLAP_MS = 7 * 86_400_000
export const MAX_JWKS_KEYS = 5

export interface ClientInput {
  name: string
  roles?: string[]
  permissions?: string[]
  authMethod?: AuthMethod
  jwks?: { keys: unknown[] }
}

export interface ClientPatch {
  name?: string
  roles?: string[]
  permissions?: string[]
  status?: 'active' | 'disabled'
  jwks?: { keys: unknown[] }
}

export interface ClientView {
  clientId: string
  name: string
  authMethod: AuthMethod
  roles: string[]
  permissions: string[]
  status: 'active' | 'disabled'
  jwks: { keys: Record<string, string>[] } | null
  previousSecretExpiresAt: string | null
  createdAt: string
  updatedAt: string
}

/** What the auth plugin and the token endpoint need of a client. */
export interface ClientAccess {
  clientId: string
  status: 'active' | 'disabled'
  roles: string[]
  level: number
  /** Registered permissions (roles and direct patterns expanded). */
  permissions: Permission[]
}

export interface ClientsDeps extends Pick<CoreDeps, 'db' | 'clock' | 'keys' | 'config'> {
  audit: Pick<AuditService, 'record'>
  rbac: RbacService
  invalidation: Invalidation
}

const isPosition = (v: unknown): v is { c: number; i: string } => typeof v === 'object' && v !== null && typeof (v as { c: unknown }).c === 'number' && typeof (v as { i: unknown }).i === 'string'

/** Public-key checks of a client JWKS: importable, asymmetric, no private members, allowed algorithms. */
export async function jwksProblems(jwks: unknown): Promise<FieldError[]> {
  const keys = (jwks as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys) || keys.length < 1 || keys.length > MAX_JWKS_KEYS) return [{ path: '/jwks/keys', message: `Expected 1 to ${MAX_JWKS_KEYS} public keys` }]
  const errors: FieldError[] = []
  for (const [i, k] of keys.entries()) {
    const key = k as JWK
    const path = `/jwks/keys/${i}`
    if (typeof key !== 'object' || key === null || Array.isArray(key)) errors.push({ path, message: 'Expected a JWK object' })
    else if (key.kty === 'oct' || 'd' in key || 'p' in key || 'q' in key || 'k' in key) errors.push({ path, message: 'Only public keys are accepted (no private or symmetric key material)' })
    else if (key.alg !== undefined && !(ASSERTION_ALGS as readonly string[]).includes(key.alg)) errors.push({ path: `${path}/alg`, message: `Expected one of ${ASSERTION_ALGS.join(', ')}` })
    else if (key.use !== undefined && key.use !== 'sig') errors.push({ path: `${path}/use`, message: 'Expected "sig"' })
    else {
      const alg = key.alg ?? (key.kty === 'RSA' ? 'RS256' : key.kty === 'EC' ? 'ES256' : key.kty === 'OKP' ? 'EdDSA' : undefined)
      try {
        if (!alg) throw new Error('kty')
        await importJWK(key, alg)
      } catch {
        errors.push({ path, message: 'Not a usable RSA, EC (P-256) or OKP (Ed25519) public key' })
      }
    }
  }
  return errors
}

const PUBLIC_MEMBERS = ['kty', 'kid', 'alg', 'use', 'crv', 'x', 'y', 'n', 'e']
/** Keeps only public members (a key with `key_ops` or x5c is stored without them). */
const publicJwk = (k: Record<string, unknown>) => Object.fromEntries(PUBLIC_MEMBERS.filter((m) => typeof k[m] === 'string').map((m) => [m, k[m]]))

export class ClientsService {
  private readonly store: ClientStore
  /**
   * Effective access by client id (bounded like every in-process cache): dropped on a change to the client or
   * any role (here, or through the invalidation relay), on the relay's resync, and after BULWARK_CACHE_TTL like
   * every permission cache, so an instance that missed a change (no Redis, or Redis away) catches up within it.
   */
  private readonly cache: LruCache<string, { access: ClientAccess | null }>

  /** Hits, misses and entries of the client-access cache (for /metrics). */
  cacheStats(): CacheStats {
    return this.cache.stats()
  }

  constructor(private readonly deps: ClientsDeps) {
    this.store = new ClientStore(deps.db)
    this.cache = new LruCache({ ...deps.config.cache, clock: deps.clock })
    // A role change or a change to the application permissions (wildcards) may change what a client holds; a client change only that client.
    deps.invalidation.on((e) => {
      if (e.kind === 'role' || e.kind === 'permissions') this.cache.clear()
      else if (e.kind === 'client') this.cache.delete(e.id)
    })
  }

  private hash(secret: string) {
    return hashToken(this.deps.keys.tokenHash, secret)
  }

  private changed(id: string) {
    this.cache.delete(id)
    this.deps.invalidation.emit({ kind: 'client', id })
  }

  private async view(row: ClientRow): Promise<ClientView> {
    const grant = await this.deps.rbac.rolesGrant(await this.store.roleIds(row.id))
    return {
      clientId: row.id,
      name: row.name,
      authMethod: row.authMethod,
      roles: grant.roles,
      permissions: JSON.parse(row.permissions) as string[],
      status: row.status,
      jwks: row.jwks ? (JSON.parse(row.jwks) as { keys: Record<string, string>[] }) : null,
      previousSecretExpiresAt: row.previousSecretHash && row.previousSecretExpiresAt && row.previousSecretExpiresAt > this.deps.clock.now() ? new Date(row.previousSecretExpiresAt).toISOString() : null,
      createdAt: new Date(row.createdAt).toISOString(),
      updatedAt: new Date(row.updatedAt).toISOString(),
    }
  }

  /** Effective access of a client (cached: see `cache`); null when unknown. */
  async access(clientId: string): Promise<ClientAccess | null> {
    const hit = this.cache.get(clientId)
    if (hit) return hit.access
    const row = await this.store.get(clientId)
    let out: ClientAccess | null = null
    if (row) {
      const grant = await this.deps.rbac.rolesGrant(await this.store.roleIds(row.id))
      const perms = new Set<Permission>(grant.permissions)
      for (const p of JSON.parse(row.permissions) as string[]) for (const x of expandPattern(p)) perms.add(x)
      out = { clientId, status: row.status, roles: grant.roles, level: grant.level, permissions: [...perms].sort() }
    }
    this.cache.set(clientId, { access: out })
    return out
  }

  /** Drops every cached access (the invalidation relay calls it after missing events while Redis was away). */
  clearCache(): void {
    this.cache.clear()
  }

  /** The stored client row (for client authentication). */
  async row(clientId: string): Promise<ClientRow | undefined> {
    if (clientId.length > 100) return undefined
    return await this.store.get(clientId)
  }

  /** True when `secret` is the client's current secret, or its previous one within the overlap (constant-time compare). */
  secretMatches(row: ClientRow, secret: string): boolean {
    if (secret.length > 200) return false
    const h = this.hash(secret)
    const current = row.secretHash !== null && safeEqual(h, row.secretHash)
    const previous = row.previousSecretHash !== null && row.previousSecretExpiresAt !== null && row.previousSecretExpiresAt > this.deps.clock.now() && safeEqual(h, row.previousSecretHash)
    return current || previous
  }

  /** Remembers an assertion jti until it expires; false for a replay. */
  async rememberAssertion(clientId: string, jti: string, expiresAtMs: number): Promise<boolean> {
    return await this.store.rememberJti(clientId, jti, expiresAtMs, this.deps.clock.now())
  }

  async list(limit: number, cursor: string | undefined): Promise<{ items: ClientView[]; nextCursor: string | null }> {
    const pos = decodeCursor(this.deps.keys.cursor, cursor, isPosition)
    const rows = await this.store.list(limit + 1, pos ? { createdAt: pos.c, id: pos.i } : undefined)
    const page = rows.slice(0, limit)
    const items = await Promise.all(page.map((r) => this.view(r)))
    const last = page.at(-1)
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(this.deps.keys.cursor, { c: last.createdAt, i: last.id }) : null }
  }

  async get(clientId: string): Promise<ClientView> {
    const row = await this.row(clientId)
    if (!row) throw notFound('No such client.')
    return await this.view(row)
  }

  private async checkJwks(method: AuthMethod, jwks: { keys: unknown[] } | undefined): Promise<string | null> {
    if (method !== 'private_key_jwt') {
      if (jwks !== undefined) throw unprocessable('validation_failed', 'jwks is only for private_key_jwt clients.', [{ path: '/jwks', message: 'Only with authMethod private_key_jwt' }])
      return null
    }
    if (jwks === undefined) throw unprocessable('validation_failed', 'A private_key_jwt client needs its public keys.', [{ path: '/jwks', message: 'Required with authMethod private_key_jwt' }])
    const errors = await jwksProblems(jwks)
    if (errors.length) throw unprocessable('validation_failed', 'The JWKS is not valid.', errors)
    return JSON.stringify({ keys: (jwks.keys as Record<string, unknown>[]).map(publicJwk) })
  }

  /** Creates a client holding only what the actor may grant; returns the id and (for secret methods) the secret, once. */
  async create(actor: Actor, input: ClientInput, meta?: RequestMeta): Promise<{ clientId: string; clientSecret: string | null; client: ClientView }> {
    const method = input.authMethod ?? 'client_secret_basic'
    const patterns = [...new Set(input.permissions ?? [])]
    const roleNames = [...new Set(input.roles ?? [])]
    const jwks = await this.checkJwks(method, input.jwks)
    const roleIds = await this.deps.rbac.assertMayGrant(actor, roleNames, patterns, 'client_create', input.name, meta)
    const now = this.deps.clock.now()
    const id = `${CLIENT_ID_PREFIX}${randomToken(16)}`
    const secret = method === 'private_key_jwt' ? null : `${SECRET_PREFIX}${randomToken(32)}`
    const row: ClientRow = {
      id,
      name: input.name,
      authMethod: method,
      secretHash: secret ? this.hash(secret) : null,
      previousSecretHash: null,
      previousSecretExpiresAt: null,
      jwks,
      permissions: JSON.stringify(patterns),
      status: 'active',
      createdBy: actor.userId,
      createdAt: now,
      updatedAt: now,
    }
    await this.store.insert(row, roleIds)
    this.changed(id)
    await this.deps.audit.record({ type: 'client_created', outcome: 'success', actorId: actor.userId, targetId: null, details: { clientId: id, name: input.name, authMethod: method, roles: roleNames, permissions: patterns } }, meta)
    return { clientId: id, clientSecret: secret, client: await this.view(row) }
  }

  /** The rules for acting on an existing client: it must sit strictly below the actor and hold nothing the actor lacks. */
  private async authorizeOn(actor: Actor, clientId: string, action: string, meta?: RequestMeta): Promise<ClientRow> {
    const row = await this.row(clientId)
    if (!row) throw notFound('No such client.')
    const acc = (await this.access(clientId))!
    await this.deps.rbac.assertAbove(actor, acc.level, acc.permissions, action, clientId, meta)
    return row
  }

  async patch(actor: Actor, clientId: string, patch: ClientPatch, meta?: RequestMeta): Promise<ClientView> {
    const row = await this.authorizeOn(actor, clientId, 'client_update', meta)
    const current = JSON.parse(row.permissions) as string[]
    const patterns = patch.permissions ? [...new Set(patch.permissions)] : undefined
    const roleNames = patch.roles ? [...new Set(patch.roles)] : undefined
    // Only additions are checked: removing is never an escalation (as for roles).
    const currentRoles = (await this.view(row)).roles
    const roleIds = await this.deps.rbac.assertMayGrant(actor, roleNames?.filter((r) => !currentRoles.includes(r)) ?? [], patterns?.filter((p) => !current.includes(p)) ?? [], 'client_update', row.name, meta)
    void roleIds
    const allRoleIds = roleNames ? await Promise.all(roleNames.map(async (n) => (await this.deps.rbac.roleId(n))!)) : undefined
    const jwks = patch.jwks !== undefined ? await this.checkJwks(row.authMethod, patch.jwks) : undefined
    const set: Partial<ClientRow> = { updatedAt: this.deps.clock.now() }
    if (patch.name !== undefined) set.name = patch.name
    if (patch.status !== undefined) set.status = patch.status
    if (patterns) set.permissions = JSON.stringify(patterns)
    if (jwks !== undefined) set.jwks = jwks
    await this.store.update(row.id, set, allRoleIds)
    this.changed(row.id)
    await this.deps.audit.record({ type: 'client_updated', outcome: 'success', actorId: actor.userId, targetId: null, details: { clientId, ...patch, jwks: patch.jwks ? 'changed' : undefined } }, meta)
    return await this.get(row.id)
  }

  async delete(actor: Actor, clientId: string, meta?: RequestMeta): Promise<void> {
    await this.authorizeOn(actor, clientId, 'client_delete', meta)
    await this.store.delete(clientId)
    this.changed(clientId)
    await this.deps.audit.record({ type: 'client_deleted', outcome: 'success', actorId: actor.userId, targetId: null, details: { clientId } }, meta)
  }

  /** A new secret; the previous one keeps working for `overlap` (0 to 7 days, default 0). */
  async rotateSecret(actor: Actor, clientId: string, overlap: string | undefined, meta?: RequestMeta): Promise<{ clientId: string; clientSecret: string; previousSecretExpiresAt: string | null }> {
    const overlapMs = overlap === undefined ? 0 : parseDuration(overlap)
    if (overlapMs === undefined || overlapMs > MAX_OVERLAP_MS) throw unprocessable('validation_failed', 'The overlap is not valid.', [{ path: '/overlap', message: 'Expected a duration such as 30m, 24h or 7d, at most 7d' }])
    const row = await this.authorizeOn(actor, clientId, 'client_secret_rotate', meta)
    if (row.authMethod === 'private_key_jwt') throw unprocessable('validation_failed', 'A private_key_jwt client has no secret; change its jwks instead.', [{ path: '/', message: 'No secret for private_key_jwt' }])
    const now = this.deps.clock.now()
    const secret = `${SECRET_PREFIX}${randomToken(32)}`
    const until = overlapMs > 0 ? now + overlapMs : null
    await this.store.update(row.id, { secretHash: this.hash(secret), previousSecretHash: until ? row.secretHash : null, previousSecretExpiresAt: until, updatedAt: now })
    this.changed(row.id)
    await this.deps.audit.record({ type: 'client_secret_rotated', outcome: 'success', actorId: actor.userId, targetId: null, details: { clientId, overlapMs } }, meta)
    return { clientId, clientSecret: secret, previousSecretExpiresAt: until ? new Date(until).toISOString() : null }
  }
}
