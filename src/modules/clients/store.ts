import { withTransaction } from '../../db/tx'
/** SQL of the OAuth clients module (the only place that touches its tables). */
import { and, desc, eq, lt, sql } from 'drizzle-orm'
import type { Db } from '../../db/client'
import { changes } from '../../db/client'
import { clientAssertionJtis, clientRoles, oauthClients } from '../../db/tables'

export type ClientRow = typeof oauthClients.$inferSelect

/**
 * Clients newest first, keyset on (createdAt, id): a row-value comparison, which both engines turn into a range
 * on the oauth_clients_created (created_at, id) index, so a later page starts where the last one ended
 * (exported for the EXPLAIN tests, test/db/list-plans.test.ts).
 */
export function clientsListQuery(db: Db, limit: number, after?: { createdAt: number; id: string }) {
  const q = db.select().from(oauthClients)
  const where = after ? sql`(${oauthClients.createdAt}, ${oauthClients.id}) < (${after.createdAt}, ${after.id})` : undefined
  return (where ? q.where(where) : q).orderBy(desc(oauthClients.createdAt), desc(oauthClients.id)).limit(limit)
}

export class ClientStore {
  constructor(private readonly db: Db) {}

  async get(id: string): Promise<ClientRow | undefined> {
    return await (await this.db.select().from(oauthClients).where(eq(oauthClients.id, id)).limit(1))[0]
  }

  async roleIds(id: string): Promise<string[]> {
    return (await this.db.select({ roleId: clientRoles.roleId }).from(clientRoles).where(eq(clientRoles.clientId, id))).map((r) => r.roleId)
  }

  /** Newest first, keyset on (createdAt, id). */
  async list(limit: number, after?: { createdAt: number; id: string }): Promise<ClientRow[]> {
    return await clientsListQuery(this.db, limit, after)
  }

  async insert(row: ClientRow, roleIds: string[]): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      await tx.insert(oauthClients).values(row)
      if (roleIds.length) await tx.insert(clientRoles).values(roleIds.map((roleId) => ({ clientId: row.id, roleId })))
    })
  }

  async update(id: string, set: Partial<ClientRow>, roleIds?: string[]): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      await tx.update(oauthClients).set(set).where(eq(oauthClients.id, id))
      if (roleIds) {
        await tx.delete(clientRoles).where(eq(clientRoles.clientId, id))
        if (roleIds.length) await tx.insert(clientRoles).values(roleIds.map((roleId) => ({ clientId: id, roleId })))
      }
    })
  }

  async delete(id: string): Promise<boolean> {
    return changes(await this.db.delete(oauthClients).where(eq(oauthClients.id, id))) > 0
  }

  /** Records an assertion `jti`; false when it was seen before (a replay). Expired ones are pruned on the way. */
  async rememberJti(clientId: string, jti: string, expiresAt: number, now: number): Promise<boolean> {
    return await withTransaction(this.db, async (tx) => {
      await tx.delete(clientAssertionJtis).where(lt(clientAssertionJtis.expiresAt, now))
      const seen = (await tx.select({ jti: clientAssertionJtis.jti }).from(clientAssertionJtis).where(and(eq(clientAssertionJtis.clientId, clientId), eq(clientAssertionJtis.jti, jti))).limit(1))[0]
      if (seen) return false
      await tx.insert(clientAssertionJtis).values({ clientId, jti, expiresAt })
      return true
    })
  }
}
