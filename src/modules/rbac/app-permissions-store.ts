import { withTransaction } from '../../db/tx'
/** SQL of the application permission registry (the only place it lives). */
import { and, eq, inArray } from 'drizzle-orm'
import type { Db } from '../../db/client'
import { appPermissions, rolePermissions, roles } from '../../db/tables'

export interface AppPermissionRow {
  name: string
  description: string
  createdAt: number
}

export interface RolePatternRow {
  roleId: string
  role: string
  level: number
  permission: string
}

export class AppPermissionStore {
  constructor(private readonly db: Db) {}

  /** Every application permission (synchronous: the registry is loaded before the first request). */
  async list(): Promise<AppPermissionRow[]> {
    return await this.db.select({ name: appPermissions.name, description: appPermissions.description, createdAt: appPermissions.createdAt }).from(appPermissions)
  }

  /** Inserts one; false when the name is taken. */
  async insert(row: AppPermissionRow & { createdBy: string }): Promise<boolean> {
    const added = await this.db.insert(appPermissions).values(row).onConflictDoNothing().returning({ name: appPermissions.name })
    return added.length > 0
  }

  async exists(name: string): Promise<boolean> {
    return (await (await this.db.select({ name: appPermissions.name }).from(appPermissions).where(eq(appPermissions.name, name)).limit(1))[0]) !== undefined
  }

  /** Every role pattern with its role (few rows: roles × patterns). */
  async rolePatterns(): Promise<RolePatternRow[]> {
    return await this.db
      .select({ roleId: roles.id, role: roles.name, level: roles.level, permission: rolePermissions.permission })
      .from(rolePermissions)
      .innerJoin(roles, eq(roles.id, rolePermissions.roleId))
      
  }

  /** Deletes the permission and the given role patterns in one transaction. */
  async deleteWithPatterns(name: string, patterns: { roleId: string; permission: string }[], now: number): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      for (const p of patterns) await tx.delete(rolePermissions).where(and(eq(rolePermissions.roleId, p.roleId), eq(rolePermissions.permission, p.permission)))
      const ids = [...new Set(patterns.map((p) => p.roleId))]
      if (ids.length) await tx.update(roles).set({ updatedAt: now }).where(inArray(roles.id, ids))
      await tx.delete(appPermissions).where(eq(appPermissions.name, name))
    })
  }
}
