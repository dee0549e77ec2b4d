/** GET /v1/me's one read: the user's shown columns and second-factor counts. */
import { eq } from 'drizzle-orm'
import type { Db } from '../../db/client'
import { users } from '../../db/tables'
import { preparedQuery } from '../../db/tx'
import { factorCountColumns } from '../mfa/mfa-login-service'

export interface MeProfile {
  id: string
  email: string
  name: string | null
  emailVerifiedAt: number | null
  createdAt: number
  mfa: { totp: boolean; passkeys: number }
}

/** One statement, prepared once on SQLite (every GET /v1/me runs it): no password hash read, no second round trip for the factors. */
const profile = preparedQuery<{ userId: string }, { id: string; email: string; name: string | null; emailVerifiedAt: number | null; createdAt: number; totp: number; passkeys: number }[]>((db, p) => {
  const { totp, passkeys } = factorCountColumns(db)
  return db
    .select({ id: users.id, email: users.email, name: users.name, emailVerifiedAt: users.emailVerifiedAt, createdAt: users.createdAt, totp, passkeys })
    .from(users)
    .where(eq(users.id, p('userId')))
})

/** The signed-in user's profile row, or undefined when the user no longer exists. */
export async function meProfile(db: Db, userId: string): Promise<MeProfile | undefined> {
  const r = (await profile.all(db, { userId }))[0]
  if (!r) return undefined
  return { id: r.id, email: r.email, name: r.name, emailVerifiedAt: r.emailVerifiedAt, createdAt: r.createdAt, mfa: { totp: Number(r.totp) > 0, passkeys: Number(r.passkeys) } }
}
