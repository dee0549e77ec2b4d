/** SQL of the OAuth clients module (the only place that touches its tables). */
import { and, desc, eq, lt, sql } from 'drizzle-orm'
import type { Db } from '../../db/client'
import { changes } from '../../db/client'
import { clientAssertionJtis, clientRoles, oauthClients } from '../../db/schema'

export type ClientRow = typeof oauthClients.$inferSelect

export class ClientStore {
  constructor(private readonly db: Db) {}

  async get(id: string): Promise<ClientRow | undefined> {
    return await this.db.select().from(oauthClients).where(eq(oauthClients.id, id)).get()
  }

  async roleIds(id: string): Promise<string[]> {
    return (await this.db.select({ roleId: clientRoles.roleId }).from(clientRoles).where(eq(clientRoles.clientId, id)).all()).map((r) => r.roleId)
  }

  /** Newest first, keyset on (createdAt, id). */
  async list(limit: number, after?: { createdAt: number; id: string }): Promise<ClientRow[]> {
    const q = this.db.select().from(oauthClients)
    const where = after ? sql`(${oauthClients.createdAt} < ${after.createdAt} OR (${oauthClients.createdAt} = ${after.createdAt} AND ${oauthClients.id} < ${after.id}))` : undefined
    return await (where ? q.where(where) : q).orderBy(desc(oauthClients.createdAt), desc(oauthClients.id)).limit(limit).all()
  }

  insert(row: ClientRow, roleIds: string[]): void {
    this.db.transaction((tx) => {
      tx.insert(oauthClients).values(row).run()
      if (roleIds.length) tx.insert(clientRoles).values(roleIds.map((roleId) => ({ clientId: row.id, roleId }))).run()
    })
  }

  update(id: string, set: Partial<ClientRow>, roleIds?: string[]): void {
    this.db.transaction((tx) => {
      tx.update(oauthClients).set(set).where(eq(oauthClients.id, id)).run()
      if (roleIds) {
        tx.delete(clientRoles).where(eq(clientRoles.clientId, id)).run()
        if (roleIds.length) tx.insert(clientRoles).values(roleIds.map((roleId) => ({ clientId: id, roleId }))).run()
      }
    })
  }

  async delete(id: string): Promise<boolean> {
    return changes(await this.db.delete(oauthClients).where(eq(oauthClients.id, id)).run()) > 0
  }

  /** Records an assertion `jti`; false when it was seen before (a replay). Expired ones are pruned on the way. */
  rememberJti(clientId: string, jti: string, expiresAt: number, now: number): boolean {
    return this.db.transaction((tx) => {
      tx.delete(clientAssertionJtis).where(lt(clientAssertionJtis.expiresAt, now)).run()
      const seen = tx.select({ jti: clientAssertionJtis.jti }).from(clientAssertionJtis).where(and(eq(clientAssertionJtis.clientId, clientId), eq(clientAssertionJtis.jti, jti))).get()
      if (seen) return false
      tx.insert(clientAssertionJtis).values({ clientId, jti, expiresAt }).run()
      return true
    })
  }
}
