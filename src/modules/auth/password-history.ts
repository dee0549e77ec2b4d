/**
 * The password history (`password_history`): the hashes of a user's last passwords, for the reuse rule of
 * the password policy (src/lib/password-policy.ts, which holds no SQL and reads them through this store).
 */
import { desc, eq, inArray } from 'drizzle-orm'
import type { Db, Tx } from '../../db/client'
import { passwordHistory } from '../../db/tables'
import { withTransaction } from '../../db/tx'
import type { PasswordHistory } from '../../lib/password-policy'

/** Inserts `hash` as the newest password of `userId` inside the caller's transaction and keeps the newest `keep` rows. */
export async function rememberPasswordInTx(tx: Pick<Tx, 'insert' | 'select' | 'delete'>, userId: string, hash: string, keep: number, now: number): Promise<void> {
  await tx.insert(passwordHistory).values({ userId, passwordHash: hash, createdAt: now })
  const stale = (await tx.select({ id: passwordHistory.id }).from(passwordHistory).where(eq(passwordHistory.userId, userId)).orderBy(desc(passwordHistory.id)))
    .slice(keep)
    .map((r) => r.id)
  if (stale.length > 0) await tx.delete(passwordHistory).where(inArray(passwordHistory.id, stale))
}

export class PasswordHistoryStore implements PasswordHistory {
  constructor(private readonly db: Db) {}

  async recent(userId: string, limit: number): Promise<string[]> {
    const rows = await this.db.select({ hash: passwordHistory.passwordHash }).from(passwordHistory).where(eq(passwordHistory.userId, userId)).orderBy(desc(passwordHistory.id)).limit(limit)
    return rows.map((r) => r.hash)
  }

  async remember(userId: string, hash: string, keep: number, now: number): Promise<void> {
    await withTransaction(this.db, async (tx) => await rememberPasswordInTx(tx, userId, hash, keep, now))
  }
}
