/**
 * Signing keys and access tokens. Keys are asymmetric (EdDSA/Ed25519 or ES256) so other services verify
 * tokens from the JWKS alone. Private keys are stored AES-GCM encrypted (key derived from BULWARK_SECRET,
 * bound to the kid). `await rotate()` makes a new current key; the previous one stays published and valid until
 * every token it signed has expired, then is refused.
 *
 * Every instance sharing the database follows a rotation made anywhere (another instance, `bulwark keys
 * rotate`, the schedule): at most every SYNC_INTERVAL_MS it reads the kids of the unrotated keys (a tiny
 * query) and reloads when they changed; a token with an unknown kid also reloads (rate-limited). The check
 * runs on the injected clock from sign/verify/jwks, so tests drive it without timers.
 *
 * jose verifies (it is what @elysiajs/jwt is built on; rotation needs a key *set* selected by `kid`, which
 * the plugin's single-secret API does not model). Signing is the JWS Compact Serialization of RFC 7515 §7.1
 * written out with node:crypto's one-shot `sign`: the same bytes jose would produce (RFC 8037 Ed25519, or
 * ES256 with the raw r||s signature of RFC 7518 §3.4), at 17 µs a token instead of jose's 43 µs (its
 * WebCrypto path), on every sign-in and refresh. test/modules/keys.test.ts verifies the tokens with jose.
 */
import { lockResource, withTransaction } from '../../db/tx'
import { and, asc, desc, eq, isNull, isNotNull, lt, sql } from 'drizzle-orm'
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as signBytes, type KeyObject } from 'node:crypto'
import { jwtVerify, type JWK, type JWTPayload } from 'jose'
import type { CoreDeps } from '../../deps'
import { dialect, signingKeys } from '../../db/tables'
import { decrypt, encrypt, randomToken } from '../../lib/crypto'
import { AppError } from '../../lib/errors'

export interface AccessClaims extends JWTPayload {
  sub: string
  sid: string
  jti: string
  iat: number
  exp: number
}

interface LoadedKey {
  kid: string
  alg: string
  publicJwk: JWK
  publicKey: KeyObject
  privateKey?: KeyObject
  createdAt: number
  expiresAt: number | null
}

/** Skew allowed between instances' clocks (and their sync delay) when a rotated key stops verifying. */
export const ROTATION_SKEW_MS = 60_000
/** How often an instance looks for a rotation made elsewhere (well below ROTATION_SKEW_MS). */
export const SYNC_INTERVAL_MS = 2_000
/** Unknown kids trigger a reload at most this often (another instance may have rotated). */
export const RELOAD_MIN_INTERVAL_MS = 5_000
/** Clock tolerance of access-token time claims, seconds. */
export const CLOCK_TOLERANCE_S = 5
/** Rows of keys that stopped verifying this long ago are deleted at the next rotation (no private key lingers). */
const PRUNE_AFTER_MS = 7 * 86_400_000

/** RFC 6750 §3: the challenge of a protected resource. */
export const BEARER_REALM = 'Bearer realm="bulwark"'

/**
 * The one 401 for every invalid access token (bad signature, expired, foreign issuer or audience, unknown
 * or retired kid, ended session, disabled user): the same detail for all, so a holder of a revoked token
 * does not learn that its signature was genuine. RFC 6750 §3.1 `error="invalid_token"`.
 */
export const invalidToken = () =>
  new AppError(401, 'invalid_token', 'The access token is not valid.', { headers: { 'www-authenticate': `${BEARER_REALM}, error="invalid_token"` } })

/** 401 for a request that carries no bearer token at all: RFC 6750 §3 (no error attribute). */
export const tokenRequired = () => new AppError(401, 'unauthorized', 'A bearer access token is required.', { headers: { 'www-authenticate': BEARER_REALM } })

/** Claims of a client-credentials access token (RFC 9068 §2.2). */
export interface ClientAccessClaims extends JWTPayload {
  sub: string
  client_id: string
  scope: string
  jti: string
  iat: number
  exp: number
}

/** The `typ` of client access tokens (RFC 9068 §2.1); user tokens keep `JWT`, so neither verifies as the other. */
export const CLIENT_TOKEN_TYP = 'at+jwt'

export class KeyService {
  private current: LoadedKey | undefined
  private verifiers = new Map<string, LoadedKey>()
  private lastLoad = Number.NEGATIVE_INFINITY
  private lastSync = Number.NEGATIVE_INFINITY
  /** The unrotated kids seen at the last load: when the table's differ, a rotation happened elsewhere. */
  private seen = ''
  /** Extra claims of a user's access token (BULWARK_TOKEN_CLAIMS; set by the composition root). */
  userClaims?: (userId: string) => Promise<Record<string, unknown>> | Record<string, unknown>
  /** Called after a scheduled rotation made by this instance (the composition root records the event). */
  onRotated?: (r: { kid: string; previous: string | undefined }) => Promise<unknown> | void
  /** The scheduled rotation in flight, if any (tests await it). */
  rotating: Promise<void> | undefined

  constructor(private readonly deps: Pick<CoreDeps, 'db' | 'clock' | 'config' | 'keys' | 'logger'>) {}

  /** Loads the keys, creating the first one on an empty database (race-safe). Synchronous (node:crypto KeyObjects). */
  async init(): Promise<void> {
    // Start-up only, before any request is served. Two instances starting together: the transaction (one writer
    // on SQLite, an advisory lock on PostgreSQL) lets only the first create the key.
    await withTransaction(this.deps.db, async (tx) => {
      await lockResource(tx, 'signing-keys')
      if (!(await tx.select({ kid: signingKeys.kid }).from(signingKeys).where(isNull(signingKeys.rotatedAt)).limit(1))[0]) await this.insertNewKey(tx)
    })
    await this.load()
    if (!this.current) throw new Error('the current signing key cannot be decrypted: was BULWARK_SECRET changed?')
  }

  private async insertNewKey(tx: Pick<CoreDeps['db'], 'insert'>): Promise<string> {
    const alg = this.deps.config.jwt.alg
    const { publicKey, privateKey } = alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const kid = randomToken(12)
    const pub = { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' }
    const priv = privateKey.export({ format: 'jwk' })
    await tx.insert(signingKeys)
      .values({
        kid,
        alg,
        publicJwk: JSON.stringify(pub),
        privateJwkEnc: encrypt(this.deps.keys.encryption, JSON.stringify(priv), `jwk:${kid}`),
        createdAt: this.deps.clock.now(),
      })
      
    return kid
  }

  /** The kids of the unrotated keys, as one comparable string. */
  private async fingerprint(): Promise<string> {
    return (await this.deps.db
      .select({ kid: signingKeys.kid })
      .from(signingKeys)
      .where(isNull(signingKeys.rotatedAt))
      .orderBy(asc(signingKeys.kid))
      )
      .map((r) => r.kid)
      .join(',')
  }

  /** Reads every key that still verifies; the newest unrotated one signs. */
  async load(): Promise<void> {
    const now = this.deps.clock.now()
    this.lastLoad = now
    this.lastSync = now
    this.seen = await this.fingerprint()
    const rows = (await this.deps.db
      .select()
      .from(signingKeys)
      .orderBy(desc(signingKeys.createdAt), desc(dialect.rowOrder))
      )
      .filter((r) => r.expiresAt === null || r.expiresAt > now)
    const verifiers = new Map<string, LoadedKey>()
    let current: LoadedKey | undefined
    for (const r of rows) {
      const publicJwk = JSON.parse(r.publicJwk) as JWK
      const k: LoadedKey = { kid: r.kid, alg: r.alg, publicJwk, publicKey: createPublicKey({ key: publicJwk as JWK & Record<string, unknown>, format: 'jwk' }), createdAt: r.createdAt, expiresAt: r.expiresAt }
      if (!current && r.rotatedAt === null) {
        try {
          const priv = JSON.parse(decrypt(this.deps.keys.encryption, r.privateJwkEnc, `jwk:${r.kid}`)) as JWK & Record<string, unknown>
          k.privateKey = createPrivateKey({ key: priv, format: 'jwk' })
          current = k
        } catch {
          this.deps.logger.error({ kid: r.kid }, 'cannot decrypt signing key: was BULWARK_SECRET changed?')
        }
      }
      verifiers.set(r.kid, k)
    }
    this.verifiers = verifiers
    // A new key this instance cannot decrypt (written under another secret) must not stop it signing.
    if (current || !this.current) this.current = current
    else this.current = { ...this.current, expiresAt: verifiers.get(this.current.kid)?.expiresAt ?? this.current.expiresAt }
  }

  /**
   * The cheap periodic check (at most every SYNC_INTERVAL_MS of the clock): reloads when another instance
   * rotated, and makes the scheduled rotation when BULWARK_KEY_ROTATION_INTERVAL is set and the key is due.
   */
  async sync(): Promise<void> {
    const now = this.deps.clock.now()
    if (now - this.lastSync < SYNC_INTERVAL_MS) return
    this.lastSync = now
    const interval = this.deps.config.jwt.rotationIntervalMs
    // Only a key that looks due takes the write lock; the transaction checks again (another instance may have won).
    if (interval > 0 && this.current && now - this.current.createdAt >= interval) {
      // Off the request path: the request goes on with the current key; one rotation in flight at a time.
      if (!this.rotating) {
        this.rotating = this.rotateIfOlderThan(interval)
          .then(async (r) => {
            if (r) {
              this.deps.logger.info({ kid: r.kid, previous: r.previous }, 'scheduled signing-key rotation')
              await this.onRotated?.(r)
            }
          })
          // A busy or failing database delays the rotation to the next check.
          .catch((err) => this.deps.logger.warn({ err }, 'scheduled signing-key rotation failed; retrying at the next check'))
          .finally(() => (this.rotating = undefined))
      }
    }
    if (await this.fingerprint() !== this.seen) await this.load()
  }

  /** Makes a new current key; the old one keeps verifying until its tokens have expired. Returns the new kid. */
  async rotate(): Promise<{ kid: string; previous: string | undefined }> {
    return (await this.rotateWhere())!
  }

  /**
   * Rotates only when the current key is at least `ms` old; undefined when it is younger (another instance
   * just rotated). Check and write are one IMMEDIATE transaction (under an advisory lock on PostgreSQL, where two
   * READ COMMITTED transactions would both see the old key as due), so concurrent instances rotate once.
   */
  async rotateIfOlderThan(ms: number): Promise<{ kid: string; previous: string | undefined } | undefined> {
    return await this.rotateWhere(ms)
  }

  private async rotateWhere(ifOlderThan?: number): Promise<{ kid: string; previous: string | undefined } | undefined> {
    const now = this.deps.clock.now()
    const r = await withTransaction(this.deps.db, async (tx) => {
        await lockResource(tx, 'signing-keys')
        const previous = await tx.select({ kid: signingKeys.kid, createdAt: signingKeys.createdAt }).from(signingKeys).where(isNull(signingKeys.rotatedAt))
        if (ifOlderThan !== undefined && previous.some((p) => now - p.createdAt < ifOlderThan)) return undefined
        const kid = await this.insertNewKey(tx)
        for (const p of previous) {
          await tx.update(signingKeys)
            .set({ rotatedAt: now, expiresAt: now + this.deps.config.jwt.accessTtlMs + ROTATION_SKEW_MS })
            .where(and(eq(signingKeys.kid, p.kid), isNull(signingKeys.rotatedAt)))
            
        }
        await tx.delete(signingKeys)
          .where(and(isNotNull(signingKeys.expiresAt), lt(signingKeys.expiresAt, now - PRUNE_AFTER_MS)))
          
        return { kid, previous: previous.at(-1)?.kid }
      })
    if (r) await this.load()
    return r
  }

  /** The public JWKS: current and still-valid previous keys. */
  async jwks(): Promise<{ keys: JWK[] }> {
    await this.sync()
    const now = this.deps.clock.now()
    return { keys: [...this.verifiers.values()].filter((k) => k.expiresAt === null || k.expiresAt > now).map((k) => k.publicJwk) }
  }

  /** The kid new tokens are signed with. */
  async currentKid(): Promise<string | undefined> {
    await this.sync()
    return this.current?.kid
  }

  /** Signs an access token for a session. */
  async sign(sub: string, sid: string, extra: Record<string, unknown> = {}): Promise<{ token: string; expiresIn: number }> {
    const claims = this.userClaims ? await this.userClaims(sub) : {}
    return await this.signAccess(sub, 'JWT', { ...claims, ...extra, sid })
  }

  /** Signs a client-credentials access token (RFC 9068: `typ: at+jwt`, `sub` = `client_id`, `scope`). */
  async signClient(clientId: string, scope: string): Promise<{ token: string; expiresIn: number }> {
    return await this.signAccess(clientId, CLIENT_TOKEN_TYP, { client_id: clientId, scope })
  }

  /** The shared part of every access token: current key, issuer, audience, subject, lifetime, a fresh jti. */
  private async signAccess(sub: string, typ: string, claims: Record<string, unknown>): Promise<{ token: string; expiresIn: number }> {
    await this.sync()
    const k = this.current
    if (!k?.privateKey) throw new Error('no signing key loaded')
    const iat = Math.floor(this.deps.clock.now() / 1000)
    const ttl = Math.floor(this.deps.config.jwt.accessTtlMs / 1000)
    const payload = { ...claims, iss: this.deps.config.publicUrl, aud: this.deps.config.jwt.audience, sub, iat, exp: iat + ttl, jti: randomToken(16) }
    return { token: compactJws(k.alg, k.kid, typ, payload, k.privateKey), expiresIn: ttl }
  }

  /** Verifies a client access token with the same rules as `verify`, but `typ: at+jwt` and `client_id`/`scope` instead of `sid`. */
  async verifyClient(token: string): Promise<ClientAccessClaims> {
    const payload = await this.verifyWith(token, CLIENT_TOKEN_TYP, ['exp', 'iat', 'sub', 'jti', 'client_id'])
    if (typeof payload.client_id !== 'string' || payload.client_id !== payload.sub || typeof payload.scope !== 'string') throw invalidToken()
    return payload as ClientAccessClaims
  }

  /**
   * Verifies an access token: pinned algorithms, issuer, audience, required exp/iat/sub/sid/jti, a known
   * and unexpired kid, and an age bounded by the configured lifetime (an `iat` in the future, a lifetime
   * `exp - iat` or an age `now - iat` beyond BULWARK_ACCESS_TOKEN_TTL plus the tolerance is refused, so a
   * token minted with a stolen key cannot outlive the policy). Anything else is `invalidToken()`.
   */
  async verify(token: string): Promise<AccessClaims> {
    const payload = await this.verifyWith(token, 'JWT', ['exp', 'iat', 'sub', 'sid', 'jti'])
    if (typeof payload.sid !== 'string' || typeof payload.sub !== 'string') throw invalidToken()
    return payload as AccessClaims
  }

  private async verifyWith(token: string, typ: string, requiredClaims: string[]): Promise<JWTPayload> {
    if (token.length > 4096) throw invalidToken()
    await this.sync()
    const ttlS = Math.floor(this.deps.config.jwt.accessTtlMs / 1000)
    try {
      const { payload } = await jwtVerify(
        token,
        async (header) => {
          const kid = header.kid
          if (!kid) throw new Error('no kid')
          let k = this.verifiers.get(kid)
          // An unknown kid may be a rotation made elsewhere since the last check: the kid query is cheap and
          // only a real change reloads; beyond that a reload is rate-limited (unknown kids cost nothing else).
          if (!k && (await this.fingerprint() !== this.seen || this.deps.clock.now() - this.lastLoad >= RELOAD_MIN_INTERVAL_MS)) {
            await this.load()
            k = this.verifiers.get(kid)
          }
          if (!k) throw new Error('unknown kid')
          if (k.expiresAt !== null && k.expiresAt <= this.deps.clock.now()) throw new Error('retired kid')
          if (header.alg !== k.alg) throw new Error('alg mismatch')
          return k.publicKey
        },
        {
          algorithms: ['EdDSA', 'ES256'],
          issuer: this.deps.config.publicUrl,
          audience: this.deps.config.jwt.audience,
          requiredClaims,
          currentDate: new Date(this.deps.clock.now()),
          clockTolerance: CLOCK_TOLERANCE_S,
          // jose refuses `now - iat` over this (plus the tolerance) and an `iat` in the future beyond the tolerance.
          maxTokenAge: ttlS,
          typ,
        },
      )
      if (typeof payload.sub !== 'string') throw new Error('claims')
      if (payload.exp! - payload.iat! > ttlS + CLOCK_TOLERANCE_S) throw new Error('lifetime over the configured one')
      return payload
    } catch {
      throw invalidToken()
    }
  }
}

const b64url = (s: string) => Buffer.from(s).toString('base64url')

/** A JWS in the Compact Serialization (RFC 7515 §7.1): BASE64URL(header).BASE64URL(payload).BASE64URL(signature). */
export function compactJws(alg: string, kid: string, typ: string, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64url(JSON.stringify({ alg, kid, typ }))}.${b64url(JSON.stringify(payload))}`
  const data = Buffer.from(input)
  let sig: Buffer
  if (alg === 'EdDSA') sig = signBytes(null, data, key)
  else if (alg === 'ES256') sig = signBytes('sha256', data, { key, dsaEncoding: 'ieee-p1363' })
  else throw new Error(`cannot sign with ${alg}`)
  return `${input}.${sig.toString('base64url')}`
}
