/**
 * The password rules, after NIST SP 800-63B §5.1.1.2: a length floor and ceiling counted in code points
 * after NFKC, every character (spaces included) allowed, no composition rules; instead a refusal of
 * passwords that are common, guessable (zxcvbn-ts score), built from the user's own email or name,
 * recently used by the same account, or (optionally) known from breaches (Have I Been Pwned, k-anonymity).
 * `check` returns reasons, cheapest rules first; it stops early where later rules could only repeat
 * the verdict or would waste work (an over-long password is never scored).
 */
import { createHash } from 'node:crypto'
import type { Config } from '../config'
import { type BreakerState, CircuitBreaker } from './circuit-breaker'
import { systemClock, type Clock } from './clock'
import type { Logger } from './logger'
import { normalizePassword, type PasswordHasher } from './password'
import { PasswordScorer } from './strength'
import commonPasswordsText from './common-passwords.txt' with { type: 'text' }

/** One reason a password is refused: a stable code for programs, a short sentence for people. */
export interface PasswordProblem {
  code: 'too_short' | 'too_long' | 'common' | 'personal' | 'too_weak' | 'reused' | 'breached' | 'breach_check_unavailable'
  message: string
}

/** What the policy may compare the password with; `userId` enables the reuse rule. */
export interface PasswordContext {
  email?: string
  name?: string | null
  userId?: string
}

/** Where the hashes of a user's last passwords are kept (src/modules/auth/password-history.ts). */
export interface PasswordHistory {
  /** The last `limit` password hashes of `userId`, newest first. */
  recent(userId: string, limit: number): Promise<string[]>
  /** Records `hash` as the newest and keeps only the newest `keep`. */
  remember(userId: string, hash: string, keep: number, now: number): Promise<void>
}

export interface PasswordPolicyDeps {
  config: Pick<Config, 'password'>
  hasher: PasswordHasher
  logger: Logger
  /** Needed for the reuse rule and `remember`; without it reuse is not checked. */
  history?: PasswordHistory
  clock?: Clock
  fetch?: typeof fetch
  /** Where zxcvbn scores are computed (src/lib/strength.ts); default: on this thread, dictionaries loaded on first use. */
  scorer?: PasswordScorer
}

/** The shipped common-password list, lower-case. */
export const COMMON_PASSWORDS: ReadonlySet<string> = new Set(
  commonPasswordsText
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#')),
)

const codePoints = (s: string): number => {
  let n = 0
  for (const _ of s) n++
  return n
}

/** The user's own words: email, its local part and the pieces of both, and the name and its pieces. */
export function personalWords(ctx: PasswordContext): string[] {
  const words = new Set<string>()
  const add = (w: string | undefined | null) => {
    const v = w?.normalize('NFKC').toLowerCase().trim()
    if (v) words.add(v)
  }
  if (ctx.email) {
    add(ctx.email)
    const local = ctx.email.split('@')[0]
    add(local)
    for (const part of (local ?? '').split(/[._+\-]+/)) add(part)
  }
  if (ctx.name) {
    add(ctx.name)
    for (const part of ctx.name.split(/\s+/)) add(part)
  }
  add('bulwark')
  return [...words]
}

export async function isReused(password: string, previousHashes: readonly string[], hasher: PasswordHasher): Promise<boolean> {
  const results = await Promise.all(previousHashes.map((h) => hasher.verify(password, h)))
  return results.includes(true)
}

/** Uppercase hex SHA-1 of the NFKC password, as the HIBP range API indexes it. */
export const hibpDigest = (password: string): string => createHash('sha1').update(normalizePassword(password), 'utf8').digest('hex').toUpperCase()

/** Checks passwords against the configured rules. */
export class PasswordPolicy {
  private readonly cfg: Config['password']
  private readonly hibpBreaker: CircuitBreaker
  private readonly scorer: PasswordScorer

  constructor(private readonly deps: PasswordPolicyDeps) {
    this.cfg = deps.config.password
    this.scorer = deps.scorer ?? new PasswordScorer({ idleMs: 0, logger: deps.logger })
    // Opens after 3 failures in a row, or at once on a timeout; one probe after 30 s.
    this.hibpBreaker = new CircuitBreaker({
      name: 'hibp',
      clock: deps.clock ?? systemClock,
      failureThreshold: 3,
      coolDownMs: HIBP_COOL_DOWN_MS,
      tripOn: isTimeout,
      onStateChange: (to, from) => {
        const fields = { breaker: 'hibp', from, to, failClosed: this.cfg.hibp.failClosed }
        if (to === 'closed') deps.logger.info(fields, 'hibp circuit breaker changed state')
        else deps.logger.warn(fields, 'hibp circuit breaker changed state')
      },
    })
  }

  /** Every reason `password` is refused; empty when it is acceptable. */
  async check(password: string, ctx: PasswordContext = {}): Promise<PasswordProblem[]> {
    const pw = normalizePassword(password)
    const length = codePoints(pw)
    if (length > this.cfg.maxLength) return [{ code: 'too_long', message: `Use at most ${this.cfg.maxLength} characters.` }]
    if (length < this.cfg.minLength) return [{ code: 'too_short', message: `Use at least ${this.cfg.minLength} characters.` }]

    const lower = pw.toLowerCase()
    if (COMMON_PASSWORDS.has(lower)) return [{ code: 'common', message: 'This is one of the most common passwords.' }]

    const problems: PasswordProblem[] = []
    const words = personalWords(ctx)
    if (this.isPersonal(lower, words)) problems.push({ code: 'personal', message: 'Do not build your password from your email address or name.' })

    const result = await this.scorer.check(pw, words)
    if (result.score < this.cfg.minScore) {
      const hint = result.warning
      problems.push({ code: 'too_weak', message: hint ? `This password is too easy to guess: ${hint}` : 'This password is too easy to guess.' })
    }
    if (problems.length > 0) return problems

    if (ctx.userId && (await this.reusedBy(ctx.userId, pw))) {
      return [{ code: 'reused', message: `Choose a password you have not used for your last ${this.cfg.history} changes.` }]
    }
    const breach = await this.breachCheck(pw)
    return breach ? [breach] : []
  }

  /**
   * Records `hash` as the newest password of `userId` and keeps only the last `history` of them; call
   * whenever a password is set (registration, change, reset), so the current password counts as used.
   */
  async remember(userId: string, hash: string): Promise<void> {
    const { history } = this.deps
    if (!history || this.cfg.history === 0) return
    await history.remember(userId, hash, this.cfg.history, this.deps.clock?.now() ?? Date.now())
  }

  /** The last `history` password hashes of `userId`, newest first. */
  async previousHashes(userId: string): Promise<string[]> {
    const { history } = this.deps
    if (!history || this.cfg.history === 0) return []
    return history.recent(userId, this.cfg.history)
  }

  private async reusedBy(userId: string, pw: string): Promise<boolean> {
    return isReused(pw, await this.previousHashes(userId), this.deps.hasher)
  }

  // Personal when one of the user's words (4+ characters) is in the password and what is left
  // without it would be too short on its own: "alice.smith2024!" for alice.smith@…, not "palace garden…".
  private isPersonal(lower: string, words: string[]): boolean {
    for (const w of words) {
      if (codePoints(w) < 4 || !lower.includes(w)) continue
      if (codePoints(lower.split(w).join('')) < this.cfg.minLength) return true
    }
    return false
  }

  /**
   * Have I Been Pwned range query: only the first 5 hex characters of the SHA-1 leave the machine, and
   * `Add-Padding` makes every response the same size. Padding rows carry a count of 0. On timeout or
   * error the configuration decides: accept (fail open) or refuse with `breach_check_unavailable`.
   * Redirects are refused (a 3xx is a failure, its target is never fetched), the body is read up to
   * `HIBP_MAX_BODY` and cut there (also a failure: a partial range could hide the suffix), and the call
   * runs behind a circuit breaker, so while HIBP is down sign-ups get the fallback at once instead of
   * each waiting for `BULWARK_HIBP_TIMEOUT`.
   */
  private async breachCheck(pw: string): Promise<PasswordProblem | undefined> {
    const hibp = this.cfg.hibp
    if (!hibp.enabled) return undefined
    const digest = hibpDigest(pw)
    const prefix = digest.slice(0, 5)
    const suffix = digest.slice(5)
    const url = `${hibp.url.endsWith('/') ? hibp.url : `${hibp.url}/`}${prefix}`
    const unavailable = (): PasswordProblem | undefined =>
      hibp.failClosed ? { code: 'breach_check_unavailable', message: 'Breach check unavailable; try again later.' } : undefined
    return this.hibpBreaker.run(
      async () => {
        const res = await (this.deps.fetch ?? fetch)(url, {
          headers: { 'Add-Padding': 'true', 'User-Agent': 'bulwark' },
          redirect: 'manual',
          signal: AbortSignal.timeout(hibp.timeoutMs),
        })
        if (res.status >= 300 && res.status < 400) {
          await res.body?.cancel().catch(() => {})
          throw new Error(`redirect refused (HTTP ${res.status})`)
        }
        if (!res.ok) {
          await res.body?.cancel().catch(() => {})
          throw new Error(`HTTP ${res.status}`)
        }
        const body = await readBounded(res, HIBP_MAX_BODY)
        for (const line of body.split('\n')) {
          const [s, count] = line.trim().split(':')
          if (s?.toUpperCase() === suffix && Number(count) > 0) {
            return { code: 'breached', message: 'This password has appeared in a data breach; choose another.' } satisfies PasswordProblem
          }
        }
        return undefined
      },
      (e) => {
        if (e !== undefined) {
          const reason = isTimeout(e) ? 'timeout' : e instanceof Error ? e.message : String(e)
          this.deps.logger.warn({ msg: 'hibp check failed', reason, failClosed: hibp.failClosed })
        }
        return unavailable()
      },
    )
  }

  /** The HIBP breaker's state (`closed`, `open`, `half-open`). */
  get breachCheckState(): BreakerState {
    return this.hibpBreaker.state
  }
}

/** How long the HIBP breaker stays open before one probe. */
export const HIBP_COOL_DOWN_MS = 30_000

/** A padded range answer is ~40 KiB; anything past 1 MiB is not HIBP talking. */
export const HIBP_MAX_BODY = 1024 * 1024

const isTimeout = (e: unknown): boolean => e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')

/** The body as text, read chunk by chunk and cut (stream cancelled, error thrown) past `max` bytes. */
export async function readBounded(res: Response, max: number): Promise<string> {
  if (!res.body) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > max) {
      await reader.cancel().catch(() => {})
      throw new Error(`response body larger than ${max} bytes`)
    }
    chunks.push(value)
  }
  return new TextDecoder().decode(Buffer.concat(chunks))
}
