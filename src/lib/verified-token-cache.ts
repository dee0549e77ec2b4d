/**
 * A bounded cache of access tokens whose signature and claims were already verified: the same token
 * presented again skips the EdDSA/ES256 signature check, which was most of the CPU of an authenticated read.
 *
 * What it keeps is only what cannot change for the same bytes: the signature was good and the issuer,
 * audience, `typ`, required claims and lifetime were acceptable. What can change is checked on every use:
 * - time: an entry answers only while `iat <= now < exp` (and `nbf <= now`), a window inside the verifier's
 *   own (which adds a clock tolerance), so a cached token never outlives what a fresh verification allows;
 *   outside that window the caller verifies again and the verifier decides.
 * - the key: the caller says which kids still verify (`retainKids`); entries signed by any other kid are
 *   dropped at once (a retired or deleted key, a reload after a rotation elsewhere).
 * - revocation is not this cache's business: the caller still checks the session (through the session
 *   cache) on every request, so a logout or a revoked session is refused on the next request.
 *
 * Entries are keyed by the SHA-256 of the exact token string (a collision is infeasible), so the cache
 * keeps no bearer token in memory (but the last one looked up, to digest it once per request), and an
 * entry is one small object whatever the token's size; callers keep only the claims they need.
 *
 * Bounded at `max` entries. When full, expired entries are swept (at most once a second); if it is still
 * full, a new token is simply not cached (it is verified on each use, as without the cache). Unlike
 * evicting the oldest, this keeps a stable share cached when more tokens are in use than fit (a
 * first-in first-out cache over tokens used round-robin would hit never). Failed verifications are never cached.
 */
import type { CacheStats } from './cache'

export interface VerifiedEntry<C> {
  claims: C
  kid: string
  /** What kind of token it was verified as (user access token, client-credentials token). */
  kind: string
  /** Epoch seconds: the entry answers from here (inclusive)… */
  fromS: number
  /** …until here (exclusive). */
  untilS: number
}

export interface TimeClaims {
  iat?: number
  exp?: number
  nbf?: number
}

/** Default bound (~470 bytes an entry, ~9 MiB full): one token per session active within the access-token lifetime. */
export const VERIFIED_TOKEN_CACHE_MAX = 20_000

/** The cache key of a token: its SHA-256, base64. */
export const tokenDigest = (token: string): string => Bun.SHA256.hash(token, 'base64') as string

export class VerifiedTokenCache<C extends TimeClaims = TimeClaims> {
  private entries = new Map<string, VerifiedEntry<C>>()
  /** The kid set last given to `retainKids`, as one comparable string. */
  private kidsSeen = ''
  private lastSweepS = Number.NEGATIVE_INFINITY
  hits = 0
  misses = 0
  /** Tokens not cached because the cache was full of live entries. */
  refused = 0
  /** The last token digested (a request looks its token up more than once). */
  private lastToken = ''
  private lastDigest = ''

  constructor(
    private readonly now: () => number,
    readonly max = VERIFIED_TOKEN_CACHE_MAX,
  ) {}

  get size(): number {
    return this.entries.size
  }

  /** Hits, misses and entries (for /metrics). */
  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, size: this.entries.size, max: this.max }
  }

  private key(token: string): string {
    if (token !== this.lastToken) {
      this.lastDigest = tokenDigest(token)
      this.lastToken = token
    }
    return this.lastDigest
  }

  private nowS(): number {
    return Math.floor(this.now() / 1000)
  }

  /** The verified entry of `token` if it is cached and inside its time window now; undefined otherwise. */
  get(token: string): VerifiedEntry<C> | undefined {
    const key = this.key(token)
    const e = this.entries.get(key)
    if (e === undefined) {
      this.misses++
      return undefined
    }
    const nowS = this.nowS()
    if (nowS < e.fromS || nowS >= e.untilS) {
      // Past `exp` it can never answer again; before `iat`, a skewed clock (the verifier decides).
      if (nowS >= e.untilS) this.entries.delete(key)
      this.misses++
      return undefined
    }
    this.hits++
    return e
  }

  /** The entry of `token` without any check (to tell a token's kind; never to accept it). */
  peek(token: string): VerifiedEntry<C> | undefined {
    return this.entries.get(this.key(token))
  }

  /** Remembers a token the verifier has just accepted as `kind`, signed by `kid`. Tokens without `exp` are not cached. */
  set(token: string, kind: string, kid: string, claims: C): void {
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return
    const fromS = Math.max(
      typeof claims.iat === 'number' ? Math.ceil(claims.iat) : Number.NEGATIVE_INFINITY,
      typeof claims.nbf === 'number' ? Math.ceil(claims.nbf) : Number.NEGATIVE_INFINITY,
    )
    const untilS = Math.ceil(claims.exp)
    const key = this.key(token)
    if (!this.entries.has(key) && this.entries.size >= this.max) {
      this.sweep()
      if (this.entries.size >= this.max) {
        this.refused++
        return
      }
    }
    this.entries.set(key, { claims, kid, kind, fromS, untilS })
  }

  /** Drops expired entries, at most once a second of the clock. */
  private sweep(): void {
    const nowS = this.nowS()
    if (nowS === this.lastSweepS) return
    this.lastSweepS = nowS
    for (const [key, e] of this.entries) if (nowS >= e.untilS) this.entries.delete(key)
  }

  /**
   * Keeps only entries signed by one of `kids` (the keys that verify now). Cheap when the set is the same
   * as last time (one string comparison); otherwise drops the entries of every kid no longer listed.
   */
  retainKids(kids: readonly string[]): void {
    const fingerprint = kids.length === 1 ? kids[0]! : [...kids].sort().join(',')
    if (fingerprint === this.kidsSeen) return
    this.kidsSeen = fingerprint
    const keep = new Set(kids)
    for (const [key, e] of this.entries) if (!keep.has(e.kid)) this.entries.delete(key)
  }

  /** Drops every entry signed by `kid` (its key was retired, deleted or revoked). */
  dropKid(kid: string): void {
    for (const [key, e] of this.entries) if (e.kid === kid) this.entries.delete(key)
  }

  /** Drops one token (e.g. it was revoked through RFC 7009). */
  forget(token: string): void {
    this.entries.delete(this.key(token))
  }

  clear(): void {
    this.entries.clear()
  }
}
