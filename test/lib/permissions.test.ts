import { describe, expect, test } from 'bun:test'
import { rolePermissions } from '../../src/db/tables'
import { testDb } from '../support/pg-apps'
import {
  ALL_PERMISSIONS,
  canAccessOwned,
  ensureCanAccessOwned,
  expandPattern,
  isKnownPermission,
  patternGrants,
  patternProblem,
  PERMISSIONS,
} from '../../src/lib/permissions'
import { AppError } from '../../src/lib/errors'

describe('permission registry', () => {
  test('holds every permission the Administration table names, plus the file scopes', () => {
    for (const p of ['users:read', 'users:write', 'users:delete', 'roles:read', 'roles:write', 'roles:assign', 'sessions:revoke', 'authz:check', 'audit:read', 'files:read:own', 'files:read:any', 'files:write:own', 'files:delete:own', 'files:delete:any']) {
      expect(Object.hasOwn(PERMISSIONS, p)).toBe(true)
    }
  })

  test('every seeded role pattern (migrations) matches at least one registered permission', async () => {
    const h = await testDb()
    const rows = await h.db.select().from(rolePermissions)
    expect(rows.length).toBeGreaterThan(10)
    for (const r of rows) expect({ p: r.permission, problem: patternProblem(r.permission) }).toEqual({ p: r.permission, problem: undefined })
    await h.close()
  })
})

describe('wildcard matching', () => {
  test('* matches exactly one segment', () => {
    expect(patternGrants('users:*', 'users:read')).toBe(true)
    expect(patternGrants('users:*', 'roles:read')).toBe(false)
    expect(patternGrants('*:read', 'users:read')).toBe(true)
    expect(patternGrants('*:read', 'users:write')).toBe(false)
    expect(patternGrants('*:*:*', 'users:read')).toBe(false)
    expect(patternGrants('files:*:any', 'files:delete:any')).toBe(true)
    expect(patternGrants('files:*:any', 'users:read')).toBe(false)
  })

  test('a two-segment pattern grants every scope of its action', () => {
    expect(patternGrants('files:read', 'files:read:own')).toBe(true)
    expect(patternGrants('files:read', 'files:read:any')).toBe(true)
    expect(patternGrants('files:read', 'files:write:own')).toBe(false)
    expect(expandPattern('*:*')).toEqual(ALL_PERMISSIONS)
  })

  test(':any implies :own, never the reverse', () => {
    expect(patternGrants('files:read:any', 'files:read:own')).toBe(true)
    expect(patternGrants('files:read:own', 'files:read:any')).toBe(false)
    // The implication is on the pattern: files:*:any also reaches files:write:own (files:write:any is not registered).
    expect(expandPattern('files:*:any').sort()).toEqual(['files:delete:any', 'files:delete:own', 'files:read:any', 'files:read:own', 'files:write:own'])
  })

  test('patterns that are malformed or match nothing are refused with a reason', () => {
    expect(patternProblem('users:*')).toBeUndefined()
    expect(patternProblem('users')).toContain('resource:action')
    expect(patternProblem('users:read:mine')).toContain('resource:action')
    expect(patternProblem('us*rs:read')).toContain('resource:action')
    expect(patternProblem('*')).toContain('resource:action')
    expect(patternProblem('Users:read')).toContain('resource:action')
    expect(patternProblem('users:fly')).toBe('matches no registered permission')
    expect(patternProblem('users:read:own')).toBe('matches no registered permission')
  })

  test('known permissions: registered ones and bases of scoped ones, never wildcards', () => {
    expect(isKnownPermission('users:read')).toBe(true)
    expect(isKnownPermission('files:read')).toBe(true)
    expect(isKnownPermission('files:*')).toBe(false)
    expect(isKnownPermission('users:fly')).toBe(false)
  })
})

describe('ownership', () => {
  const owner = { userId: 'u1', permissions: ['files:read:own'] }
  const moderator = { userId: 'm1', permissions: ['files:read:any', 'files:read:own'] }
  test('the owner needs :own, anyone else :any', () => {
    expect(canAccessOwned(owner, 'files:read', 'u1')).toBe(true)
    expect(canAccessOwned(owner, 'files:read', 'u2')).toBe(false)
    expect(canAccessOwned(moderator, 'files:read', 'u2')).toBe(true)
    expect(canAccessOwned({ userId: 'u1', permissions: [] }, 'files:read', 'u1')).toBe(false)
  })
  test('a resource the caller may not see is a 404, never a 403', () => {
    let err: unknown
    try {
      ensureCanAccessOwned(owner, 'files:read', 'someone-else')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(AppError)
    expect((err as AppError).status).toBe(404)
    expect((err as AppError).code).toBe('not_found')
    expect(() => ensureCanAccessOwned(owner, 'files:read', 'u1')).not.toThrow()
  })
})
