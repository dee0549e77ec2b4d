/** What the accounts feature needs from password hashing, password policy and mail. */
export interface Hasher {
  hash(password: string): Promise<string>
  verify(password: string, hash: string): Promise<boolean>
  needsRehash(hash: string): boolean
  /** Same work as a verify, for accounts that do not exist (no timing oracle). */
  dummyVerify(password: string): Promise<void>
}

export interface PolicyReason {
  code: string
  message: string
}

export interface Policy {
  check(password: string, ctx: { email?: string; name?: string | null }): Promise<PolicyReason[]>
}

export interface Mail {
  to: string
  subject: string
  text: string
}

export interface Mailer {
  /** Queues a message; never blocks the request on delivery. */
  send(mail: Mail): void
}
