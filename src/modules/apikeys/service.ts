/**
 * Personal API keys for callers that cannot do OAuth (scripts, CI jobs). A key acts for its owner and can
 * never do more: its permissions at each use are the owner's effective permissions *now*, intersected with
 * the key's own patterns (when it was given some), so a downgraded owner downgrades their keys at once,
 * and a disabled or deleted owner's keys stop working on the next request. Keys are stored only as HMACs
 * under a key derived from the master secret, looked up by that HMAC (the index lookup is the constant-time
 * comparison: no secret-dependent string compare happens), expire (90 days unless told), and record their
 * last use at most once a minute.
 */
import { createHmac, hkdfSync } from 'node:crypto'
import type { Clock } from '../../lib/clock'
import { conflict, forbidden, notFound, unprocessable, type FieldError } from '../../lib/errors'
import { newId } from '../../lib/ids'
import type { PermissionRegistry } from '../../lib/permissions'
import type { AuditService, RequestMeta } from '../audit/service'
import type { Effective } from '../rbac/service'
import type { Db } from '../../db/client'
import { generateKey, hintOf, isWellFormedKey } from './format'
import { ApiKeyStore, type ApiKeyRow } from './store'

export const DEFAULT_TTL_MS = 90 * 86_400_000
export const MAX_TTL_MS = 365 * 86_400_000
export const MAX_KEYS_PER_USER = 50
export const TOUCH_EVERY_MS = 60_000
const DURATION = /^([1-9][0-9]{0,5})([mhd])$/
const UNIT = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const

/** `30d`, `12h`, `90m` → milliseconds; undefined when malformed. */
export function parseDuration(v: string): number | undefined {
  const m = DURATION.exec(v)
  return m ? Number(m[1]) * UNIT[m[2] as keyof typeof UNIT] : undefined
}

export interface ApiKeyView {
  id: string
  name: string
  userId: string
  hint: string
  permissions: string[] | null
  createdAt: string
  expiresAt: string | null
  lastUsedAt: string | null
  revokedAt: string | null
}

export interface ApiKeyDeps {
  db: Db
  clock: Clock
  tokenHashKey: Buffer
  audit: Pick<AuditService, 'record'>
  registry: PermissionRegistry
  /** The owner's effective view (cached by RBAC, invalidated on every change). */
  access(userId: string): Effective | null | Promise<Effective | null>
}

/** A key that authenticated: its row, the owner's view and the permissions the key may use now. */
export interface ApiKeyAuth {
  row: ApiKeyRow
  owner: Effective
  permissions: string[]
}

/** RFC 7662 §2.2 introspection fields for an API key. */
export type ApiKeyIntrospection = { active: false } | { active: true; sub: string; scope: string; iat: number; exp?: number; token_type: 'api_key'; key_id: string }

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

export class ApiKeyService {
  private readonly store: ApiKeyStore
  private readonly hashKey: Buffer

  constructor(private readonly d: ApiKeyDeps) {
    this.store = new ApiKeyStore(d.db)
    // Its own HKDF label under the token-hash key: a key hash can never equal a refresh-token hash.
    this.hashKey = Buffer.from(hkdfSync('sha256', d.tokenHashKey, Buffer.from('bulwark-v1'), Buffer.from('api-key'), 32))
  }

  private hash(key: string): string {
    return createHmac('sha256', this.hashKey).update(key).digest('base64url')
  }

  view(r: ApiKeyRow): ApiKeyView {
    return {
      id: r.id,
      name: r.name,
      userId: r.userId,
      hint: r.hint,
      permissions: r.permissions === null ? null : (JSON.parse(r.permissions) as string[]),
      createdAt: iso(r.createdAt)!,
      expiresAt: iso(r.expiresAt),
      lastUsedAt: iso(r.lastUsedAt),
      revokedAt: iso(r.revokedAt),
    }
  }

  /** Creates a key for `owner` (the signed-in caller); the key itself is returned once and never stored. */
  async create(
    owner: { userId: string; permissions: readonly string[]; amr: readonly string[] },
    input: { name: string; permissions?: string[]; expiresIn?: string },
    meta?: RequestMeta,
  ): Promise<ApiKeyView & { key: string }> {
    const errors: FieldError[] = []
    if (typeof input.name !== 'string' || input.name.trim().length === 0 || input.name.length > 100) errors.push({ path: '/name', message: 'Expected 1 to 100 characters' })
    let ttl = DEFAULT_TTL_MS
    if (input.expiresIn !== undefined) {
      const ms = typeof input.expiresIn === 'string' ? parseDuration(input.expiresIn) : undefined
      if (ms === undefined || ms > MAX_TTL_MS) errors.push({ path: '/expiresIn', message: 'A duration such as 30d, 12h or 90m, at most 365d' })
      else ttl = ms
    }
    const patterns = input.permissions === undefined ? null : [...new Set(input.permissions)]
    if (patterns) {
      if (patterns.length > 100) errors.push({ path: '/permissions', message: 'At most 100 permission patterns' })
      else patterns.forEach((p, i) => {
        const problem = typeof p === 'string' ? this.d.registry.problem(p) : 'Expected a string'
        if (problem) errors.push({ path: `/permissions/${i}`, message: `${String(p).slice(0, 64)}: ${problem}` })
      })
    }
    if (errors.length) throw unprocessable(errors.some((e) => e.path.startsWith('/permissions/')) ? 'invalid_permission' : 'validation_failed', 'The API key is not valid.', errors)
    if (patterns) {
      const held = new Set(owner.permissions)
      for (const p of patterns) {
        const missing = this.d.registry.expand(p).filter((perm) => !held.has(perm))
        if (missing.length) throw forbidden(`A key cannot hold more than you: you do not hold ${missing.slice(0, 10).join(', ')}.`)
      }
    }
    if ((await this.store.list(owner.userId, MAX_KEYS_PER_USER + 1)).filter((k) => k.revokedAt === null).length >= MAX_KEYS_PER_USER) {
      throw conflict(`At most ${MAX_KEYS_PER_USER} live API keys per user; revoke one first.`)
    }
    const now = this.d.clock.now()
    const key = generateKey()
    const row: ApiKeyRow = {
      id: newId(),
      userId: owner.userId,
      name: input.name.trim(),
      keyHash: this.hash(key),
      hint: hintOf(key),
      permissions: patterns ? JSON.stringify(patterns) : null,
      amr: owner.amr.join(',') || 'pwd',
      createdAt: now,
      expiresAt: now + ttl,
      lastUsedAt: null,
      revokedAt: null,
    }
    await this.store.insert(row)
    await this.d.audit.record({ type: 'api_key_created', outcome: 'success', actorId: owner.userId, targetId: owner.userId, details: { keyId: row.id, name: row.name, permissions: patterns } }, meta)
    return { ...this.view(row), key }
  }

  /** The permissions a key may use now: the owner's, limited to the key's patterns. */
  private scoped(row: ApiKeyRow, owner: Effective): string[] {
    if (row.permissions === null) return [...owner.permissions]
    const allowed = new Set<string>()
    for (const p of JSON.parse(row.permissions) as string[]) for (const perm of this.d.registry.expand(p)) allowed.add(perm)
    return owner.permissions.filter((p) => allowed.has(p))
  }

  /** Resolves a presented key; undefined for anything that is not a live key of an active owner. */
  async authenticate(token: string): Promise<ApiKeyAuth | undefined> {
    if (!isWellFormedKey(token)) return undefined
    const row = await this.store.byHash(this.hash(token))
    const now = this.d.clock.now()
    if (!row || row.revokedAt !== null || (row.expiresAt !== null && row.expiresAt <= now)) return undefined
    const owner = await this.d.access(row.userId)
    if (!owner || owner.status !== 'active') return undefined
    if (row.lastUsedAt === null || now - row.lastUsedAt >= TOUCH_EVERY_MS) {
      await this.store.touch(row.id, now, TOUCH_EVERY_MS)
      row.lastUsedAt = now
    }
    return { row, owner, permissions: this.scoped(row, owner) }
  }

  /** RFC 7662 answer for an API key (for the OAuth introspection endpoint). */
  async introspect(token: string): Promise<ApiKeyIntrospection> {
    const a = await this.authenticate(token)
    if (!a) return { active: false }
    return {
      active: true,
      sub: a.row.userId,
      scope: a.permissions.join(' '),
      iat: Math.floor(a.row.createdAt / 1000),
      ...(a.row.expiresAt !== null ? { exp: Math.floor(a.row.expiresAt / 1000) } : {}),
      token_type: 'api_key',
      key_id: a.row.id,
    }
  }

  /** RFC 7009 revocation by the key itself; false when it is not a known live key (the endpoint still answers 200). */
  async revokeByToken(token: string, meta?: RequestMeta): Promise<boolean> {
    if (!isWellFormedKey(token)) return false
    const row = await this.store.byHash(this.hash(token))
    if (!row || !(await this.store.revoke(row.id, this.d.clock.now()))) return false
    await this.d.audit.record({ type: 'api_key_revoked', outcome: 'success', actorId: null, targetId: row.userId, details: { keyId: row.id, via: 'token' } }, meta)
    return true
  }

  /** Keys of one user (`userId`) or of everyone, newest first. */
  async list(userId: string | undefined, limit: number, before?: string): Promise<ApiKeyRow[]> {
    return await this.store.list(userId, limit, before)
  }

  /** Revokes a key; with `ownerId`, only that user's key (else 404, no existence oracle). Idempotent for a revoked key. */
  async revoke(actorId: string, id: string, ownerId: string | undefined, meta?: RequestMeta): Promise<void> {
    const row = await this.store.byId(id)
    if (!row || (ownerId !== undefined && row.userId !== ownerId)) throw notFound('No such API key.')
    if (await this.store.revoke(id, this.d.clock.now())) {
      await this.d.audit.record({ type: 'api_key_revoked', outcome: 'success', actorId, targetId: row.userId, details: { keyId: id, name: row.name } }, meta)
    }
  }
}
