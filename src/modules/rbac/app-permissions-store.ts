/** SQL of the application permission registry (the only place it lives). */
import { and, eq, inArray } from 'drizzle-orm'
import type { Db } from '../../db/client'
import { appPermissions, rolePermissions, roles } from '../../db/schema'

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
  loadSync(): AppPermissionRow[] {
    return this.db.select({ name: appPermissions.name, description: appPermissions.description, createdAt: appPermissions.createdAt }).from(appPermissions).all()
  }

  async list(): Promise<AppPermissionRow[]> {
    return await this.db.select({ name: appPermissions.name, description: appPermissions.description, createdAt: appPermissions.createdAt }).from(appPermissions).all()
  }

  /** Inserts one; false when the name is taken. */
  async insert(row: AppPermissionRow & { createdBy: string }): Promise<boolean> {
    const added = await this.db.insert(appPermissions).values(row).onConflictDoNothing().returning({ name: appPermissions.name }).all()
    return added.length > 0
  }

  async exists(name: string): Promise<boolean> {
    return (await this.db.select({ name: appPermissions.name }).from(appPermissions).where(eq(appPermissions.name, name)).get()) !== undefined
  }

  /** Every role pattern with its role (few rows: roles × patterns). */
  async rolePatterns(): Promise<RolePatternRow[]> {
    return await this.db
      .select({ roleId: roles.id, role: roles.name, level: roles.level, permission: rolePermissions.permission })
      .from(rolePermissions)
      .innerJoin(roles, eq(roles.id, rolePermissions.roleId))
      .all()
  }

  /** Deletes the permission and the given role patterns in one transaction. */
  deleteWithPatterns(name: string, patterns: { roleId: string; permission: string }[], now: number): void {
    this.db.transaction((tx) => {
      for (const p of patterns) tx.delete(rolePermissions).where(and(eq(rolePermissions.roleId, p.roleId), eq(rolePermissions.permission, p.permission))).run()
      const ids = [...new Set(patterns.map((p) => p.roleId))]
      if (ids.length) tx.update(roles).set({ updatedAt: now }).where(inArray(roles.id, ids)).run()
      tx.delete(appPermissions).where(eq(appPermissions.name, name)).run()
    })
  }
}
