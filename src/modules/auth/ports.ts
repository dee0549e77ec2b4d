/** What the accounts feature needs from password hashing, password policy and mail. */
export interface Hasher {
  hash(password: string): Promise<string>
  verify(password: string, hash: string): Promise<boolean>
  needsRehash(hash: string): boolean
  /** Same work as a verify, for accounts that do not exist (no timing oracle). */
  dummyVerify(password: string): Promise<unknown>
}

export interface PolicyReason {
  code: string
  message: string
}

export interface Policy {
  /** Reasons the password is refused; with `userId`, reuse of recent passwords is one of them. */
  check(password: string, ctx: { email?: string; name?: string | null; userId?: string }): Promise<PolicyReason[]>
}

export type { Mailer } from '../mail/outbox'
