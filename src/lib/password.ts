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
import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'

/**
 * At most `limit` hashes at once. argon2id is memory-hard: more parallel hashes than cores only thrash
 * the caches (each touches ~19 MiB), so queueing them keeps throughput at the raw rate under load.
 *
 * A finishing hash hands its slot straight to the first waiter (the count does not drop in between): a
 * waiter woken by a resolved promise runs a microtask later, and a caller arriving in that gap would
 * otherwise see a free slot and start a second hash next to it (test/lib/password.test.ts). A loop of
 * sixteen queued verifies on one core that arrived in that gap ran at 130/s against 180/s for
 * back-to-back synchronous verifies; with the hand-over, 160/s against 156–168/s.
 */
export class Gate {
  private active = 0
  private waiting: (() => void)[] = []
  constructor(private readonly limit: number) {}
  /** Hashes running now (for tests). */
  get running(): number {
    return this.active
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r))
    else this.active++
    try {
      return await fn()
    } finally {
      const next = this.waiting.shift()
      if (next) next()
      else this.active--
    }
  }
}

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
  /**
   * What an unknown email's sign-in verifies against: a PHC string at the configured cost with a random salt
   * and a random 32-byte "hash". Verifying any password against it runs the full argon2id computation at
   * those parameters and compares (false, but for a 2^-256 chance), exactly the work of a wrong password; no
   * hash is computed to make it, so start-up spends none.
   */
  private readonly dummy: string
  private readonly gate = new Gate(Math.max(1, availableParallelism()))

  constructor(params: HasherParams) {
    this.memoryCost = params.argon2MemoryKib
    this.timeCost = params.argon2Time
    const b64 = (bytes: number) => randomBytes(bytes).toString('base64').replace(/=+$/, '')
    this.dummy = `$argon2id$v=19$m=${this.memoryCost},t=${this.timeCost},p=1$${b64(16)}$${b64(32)}`
  }

  /** A PHC string for `pw` with a fresh random salt. */
  hash(pw: string): Promise<string> {
    return this.gate.run(() => argonHash(normalizePassword(pw), { algorithm: ARGON2ID, memoryCost: this.memoryCost, timeCost: this.timeCost, parallelism: 1 }))
  }

  /** True when `pw` matches `hash`; false for a wrong password or a hash it cannot read. */
  async verify(pw: string, hash: string): Promise<boolean> {
    if (!PHC.test(hash)) return false
    try {
      return await this.gate.run(() => argonVerify(hash, normalizePassword(pw)))
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
    await this.verify(pw, this.dummy)
    return false
  }
}
