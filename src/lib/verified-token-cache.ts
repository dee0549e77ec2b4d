/**
 * A bounded cache of access tokens whose signature and claims were already verified, keyed by the exact
 * token string: the same token presented again skips the EdDSA/ES256 signature check, which is most of
 * the CPU of an authenticated read.
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
 * Keys are the whole token string compared exactly (a hash of it alone would let a crafted collision
 * through). Eviction is first-in first-out at `max` entries: a hot token evicted is simply verified again.
 * Failed verifications are never cached.
 */

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

export const VERIFIED_TOKEN_CACHE_MAX = 10_000

export class VerifiedTokenCache<C extends TimeClaims = TimeClaims> {
  private entries = new Map<string, VerifiedEntry<C>>()
  /** Entries per kid, so dropping a kid does not walk the whole map. */
  private byKid = new Map<string, Set<string>>()
  /** The kid set last given to `retainKids`, as one comparable string. */
  private kidsSeen = ''
  hits = 0
  misses = 0

  constructor(
    private readonly now: () => number,
    readonly max = VERIFIED_TOKEN_CACHE_MAX,
  ) {}

  get size(): number {
    return this.entries.size
  }

  /** The verified entry of `token` if it is cached and inside its time window now; undefined otherwise. */
  get(token: string): VerifiedEntry<C> | undefined {
    const e = this.entries.get(token)
    if (e === undefined) {
      this.misses++
      return undefined
    }
    const nowS = Math.floor(this.now() / 1000)
    if (nowS < e.fromS || nowS >= e.untilS) {
      // Past `exp` it can never answer again (time does not go back in production); before `iat`, a skewed clock.
      if (nowS >= e.untilS) this.delete(token, e.kid)
      this.misses++
      return undefined
    }
    this.hits++
    return e
  }

  /** The entry of `token` without any check (to tell a token's kind; never to accept it). */
  peek(token: string): VerifiedEntry<C> | undefined {
    return this.entries.get(token)
  }

  /** Remembers a token the verifier has just accepted as `kind`, signed by `kid`. Tokens without `exp` are not cached. */
  set(token: string, kind: string, kid: string, claims: C): void {
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return
    const fromS = Math.max(
      typeof claims.iat === 'number' ? Math.ceil(claims.iat) : Number.NEGATIVE_INFINITY,
      typeof claims.nbf === 'number' ? Math.ceil(claims.nbf) : Number.NEGATIVE_INFINITY,
    )
    const untilS = Math.ceil(claims.exp)
    if (this.entries.has(token)) this.delete(token, this.entries.get(token)!.kid)
    while (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next()
      if (oldest.done) break
      this.delete(oldest.value, this.entries.get(oldest.value)!.kid)
    }
    this.entries.set(token, { claims, kid, kind, fromS, untilS })
    let set = this.byKid.get(kid)
    if (!set) this.byKid.set(kid, (set = new Set()))
    set.add(token)
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
    for (const kid of [...this.byKid.keys()]) if (!keep.has(kid)) this.dropKid(kid)
  }

  /** Drops every entry signed by `kid` (its key was retired, deleted or revoked). */
  dropKid(kid: string): void {
    const set = this.byKid.get(kid)
    if (!set) return
    for (const token of set) this.entries.delete(token)
    this.byKid.delete(kid)
  }

  /** Drops one token (e.g. it was revoked through RFC 7009). */
  forget(token: string): void {
    const e = this.entries.get(token)
    if (e) this.delete(token, e.kid)
  }

  clear(): void {
    this.entries.clear()
    this.byKid.clear()
  }

  private delete(token: string, kid: string): void {
    this.entries.delete(token)
    const set = this.byKid.get(kid)
    if (!set) return
    set.delete(token)
    if (set.size === 0) this.byKid.delete(kid)
  }
}
