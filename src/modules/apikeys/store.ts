/** SQL of API keys (the only place it lives). */
import { and, desc, eq, isNull, lt, or } from 'drizzle-orm'
import type { Db } from '../../db/client'
import { apiKeys } from '../../db/tables'

export type ApiKeyRow = typeof apiKeys.$inferSelect

/** Keys of one user (or all), newest first, keyset on id (exported for the EXPLAIN tests, test/db/list-plans.test.ts). */
export function apiKeysListQuery(db: Db, userId: string | undefined, limit: number, before?: string) {
  const conds = [userId ? eq(apiKeys.userId, userId) : undefined, before ? lt(apiKeys.id, before) : undefined].filter((c) => c !== undefined)
  return db.select().from(apiKeys).where(conds.length ? and(...conds) : undefined).orderBy(desc(apiKeys.id)).limit(limit)
}

export class ApiKeyStore {
  constructor(private readonly db: Db) {}

  async insert(row: ApiKeyRow): Promise<void> {
    await this.db.insert(apiKeys).values(row)
  }

  async byHash(hash: string): Promise<ApiKeyRow | undefined> {
    return await (await this.db.select().from(apiKeys).where(eq(apiKeys.keyHash, hash)).limit(1))[0]
  }

  async byId(id: string): Promise<ApiKeyRow | undefined> {
    return await (await this.db.select().from(apiKeys).where(eq(apiKeys.id, id)).limit(1))[0]
  }

  /** Keys of one user (or all when `userId` is undefined), newest first, keyset-paginated on id. */
  async list(userId: string | undefined, limit: number, before?: string): Promise<ApiKeyRow[]> {
    return await apiKeysListQuery(this.db, userId, limit, before)
  }

  /** Marks a key revoked; true when it was live. */
  async revoke(id: string, now: number): Promise<boolean> {
    const rows = await this.db.update(apiKeys).set({ revokedAt: now }).where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt))).returning({ id: apiKeys.id })
    return rows.length > 0
  }

  /** Records use at most once per `everyMs` per key (the WHERE makes concurrent requests write once). */
  async touch(id: string, now: number, everyMs: number): Promise<void> {
    await this.db
      .update(apiKeys)
      .set({ lastUsedAt: now })
      .where(and(eq(apiKeys.id, id), or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, now - everyMs))))
      
  }
}
