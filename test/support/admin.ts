/** Test helpers for the administration features: the real app signed in as seeded users. */
import type { AppDeps } from '../../src/app'
import { eq } from 'drizzle-orm'
import { roles, sessions, refreshTokens, userRoles, users } from '../../src/db/tables'
import { withTransaction } from '../../src/db/tx'
import { newId } from '../../src/lib/ids'
import { makeApp, type ReqOpts } from '../helpers'

/** The real app; `await as(userId, …)` signs in as that user with a real session and access token. */
export async function makeAdminApp(env: Record<string, string> = {}) {
  const t = await makeApp(env)
  /** A request as `as` (a user id); no `as` is anonymous. */
  const as = async (userId: string | undefined, method: string, path: string, o: ReqOpts = {}) => {
    if (!userId) return t.req(method, path, o)
    // As if signed in with a password and a second factor (admin and owner roles require MFA).
    const { session } = await t.deps.sessions.create({ userId, transport: 'bearer', amr: ['pwd', 'otp'], meta: {} })
    const { token } = await t.deps.signer.sign(userId, session.id)
    return t.req(method, path, { ...o, token })
  }
  return { ...t, as }
}

let n = 0

/** Inserts a user holding `roles` (default: just `user`) straight into the database. */
export async function seedUser(deps: AppDeps, o: { email?: string; name?: string | null; roles?: string[]; status?: 'active' | 'disabled'; verified?: boolean } = {}): Promise<string> {
  const id = newId()
  const now = deps.clock.now()
  n++
  await withTransaction(deps.db, async (tx) => {
    await tx
      .insert(users)
      .values({ id, email: (o.email ?? `user${n}-${id.slice(-6)}@example.test`).toLowerCase(), name: o.name === undefined ? `User ${n}` : o.name, status: o.status ?? 'active', emailVerifiedAt: o.verified ? now : null, createdAt: now, updatedAt: now })
    for (const r of o.roles ?? ['user']) {
      const role = (await tx.select({ id: roles.id }).from(roles).where(eq(roles.name, r)).limit(1))[0]
      if (!role) throw new Error(`role ${r} does not exist`)
      await tx.insert(userRoles).values({ userId: id, roleId: role.id, grantedBy: null, createdAt: now }).onConflictDoNothing()
    }
  })
  return id
}

/** Inserts a live session with one unspent refresh token for a user; returns the ids. */
export async function seedSession(deps: AppDeps, userId: string): Promise<{ sessionId: string; tokenId: string }> {
  const now = deps.clock.now()
  const sessionId = newId()
  const tokenId = newId()
  await deps.db.insert(sessions).values({ id: sessionId, userId, createdAt: now, lastSeenAt: now, expiresAt: now + 86_400_000, authTime: now })
  await deps.db.insert(refreshTokens).values({ id: tokenId, sessionId, tokenHash: `hash-${tokenId}`, createdAt: now, expiresAt: now + 86_400_000 })
  return { sessionId, tokenId }
}

/** Security events of a type, oldest first. */
export async function eventsOf(deps: AppDeps, type: string) {
  return (await deps.audit.list({ type, limit: 100 })).reverse()
}
