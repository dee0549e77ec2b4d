/**
 * Password hashing with argon2id (RFC 9106) through @node-rs/argon2, stored as PHC strings
 * (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`). @node-rs/argon2 was measured about three times faster than
 * Bun.password at the same parameters, both under `bun run` and inside the compiled binary (figures in
 * the README, script in bench/argon2.ts); the hashes are the same format, so either library verifies
 * the other's. A faster implementation costs an attacker nothing: they already use fast ones.
 *
 * Passwords are NFKC-normalised first (NIST SP 800-63B §5.1.1.2), so the same password typed on
 * two keyboards that compose characters differently still matches.
 */
import { hash as argonHash, verify as argonVerify } from '@node-rs/argon2'
import { randomToken } from './crypto'

export interface HasherParams {
  argon2MemoryKib: number
  argon2Time: number
}

// Algorithm.Argon2id of @node-rs/argon2 is an ambient const enum, which isolatedModules cannot read.
const ARGON2ID = 2
const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/

/** The form every password is hashed and compared in. */
export const normalizePassword = (pw: string): string => pw.normalize('NFKC')

/** Hashes and verifies passwords at the configured argon2id cost. */
export class PasswordHasher {
  private readonly memoryCost: number
  private readonly timeCost: number
  private dummy: Promise<string> | undefined

  constructor(params: HasherParams) {
    this.memoryCost = params.argon2MemoryKib
    this.timeCost = params.argon2Time
  }

  /** A PHC string for `pw` with a fresh random salt. */
  hash(pw: string): Promise<string> {
    return argonHash(normalizePassword(pw), { algorithm: ARGON2ID, memoryCost: this.memoryCost, timeCost: this.timeCost, parallelism: 1 })
  }

  /** True when `pw` matches `hash`; false for a wrong password or a hash it cannot read. */
  async verify(pw: string, hash: string): Promise<boolean> {
    if (!PHC.test(hash)) return false
    try {
      return await argonVerify(hash, normalizePassword(pw))
    } catch {
      return false
    }
  }

  /** True when `hash` was made with other parameters than the configured ones (re-hash after a successful sign-in). */
  needsRehash(hash: string): boolean {
    const m = PHC.exec(hash)
    if (!m) return true
    return Number(m[1]) !== this.memoryCost || Number(m[2]) !== this.timeCost || Number(m[3]) !== 1
  }

  /**
   * Does the work of a real verify against a fixed hash at the configured cost and returns false, so a
   * sign-in for an unknown email costs as long as one for a known email with a wrong password.
   */
  async dummyVerify(pw: string): Promise<false> {
    await this.verify(pw, await this.dummyHash())
    return false
  }

  /**
   * Computes the dummy hash now rather than on the first unknown-email sign-in (which would then cost
   * a hash plus a verify, and be told apart). Call once at start-up; safe to skip.
   */
  warmUp(): Promise<void> {
    return this.dummyHash().then(() => undefined)
  }

  private dummyHash(): Promise<string> {
    this.dummy ??= this.hash(randomToken(24))
    return this.dummy
  }
}
