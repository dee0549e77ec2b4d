/**
 * Signing keys and access tokens. Keys are asymmetric (EdDSA/Ed25519 or ES256) so other services verify
 * tokens from the JWKS alone. Private keys are stored AES-GCM encrypted (key derived from BULWARK_SECRET,
 * bound to the kid). `rotate()` makes a new current key; the previous one stays published and valid until
 * every token it signed has expired, then is refused.
 *
 * jose is used directly (it is what @elysiajs/jwt is built on) because rotation needs a key *set*
 * selected by `kid`, which the plugin's single-secret API does not model.
 */
import { and, desc, eq, gt, isNull, or } from 'drizzle-orm'
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose'
import type { CoreDeps } from '../../deps'
import { signingKeys } from '../../db/schema'
import { decrypt, encrypt, randomToken } from '../../lib/crypto'
import { unauthorized } from '../../lib/errors'

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
  expiresAt: number | null
}

/** Skew allowed between instances' clocks when a rotated key stops verifying. */
const ROTATION_SKEW_MS = 60_000
/** Unknown kids trigger a reload at most this often (another instance may have rotated). */
const RELOAD_MIN_INTERVAL_MS = 5_000

export class KeyService {
  private current: LoadedKey | undefined
  private verifiers = new Map<string, LoadedKey>()
  private lastLoad = 0

  constructor(private readonly deps: Pick<CoreDeps, 'db' | 'clock' | 'config' | 'keys' | 'logger'>) {}

  /** Loads the keys, creating the first one on an empty database. Synchronous (node:crypto KeyObjects). */
  init(): void {
    this.load()
    if (!this.current) {
      this.insertNewKey()
      this.load()
    }
  }

  private insertNewKey(): string {
    const alg = this.deps.config.jwt.alg
    const { publicKey, privateKey } = alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const kid = randomToken(12)
    const pub = { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' }
    const priv = privateKey.export({ format: 'jwk' })
    this.deps.db
      .insert(signingKeys)
      .values({
        kid,
        alg,
        publicJwk: JSON.stringify(pub),
        privateJwkEnc: encrypt(this.deps.keys.encryption, JSON.stringify(priv), `jwk:${kid}`),
        createdAt: this.deps.clock.now(),
      })
      .run()
    return kid
  }

  /** Reads every key that still verifies; the newest unrotated one signs. */
  load(): void {
    const now = this.deps.clock.now()
    this.lastLoad = now
    const rows = this.deps.db
      .select()
      .from(signingKeys)
      .where(or(isNull(signingKeys.expiresAt), gt(signingKeys.expiresAt, now)))
      .orderBy(desc(signingKeys.createdAt))
      .all()
    const verifiers = new Map<string, LoadedKey>()
    let current: LoadedKey | undefined
    for (const r of rows) {
      const publicJwk = JSON.parse(r.publicJwk) as JWK
      const k: LoadedKey = { kid: r.kid, alg: r.alg, publicJwk, publicKey: createPublicKey({ key: publicJwk as JWK & Record<string, unknown>, format: 'jwk' }), expiresAt: r.expiresAt }
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
    this.current = current
  }

  /** Makes a new current key; the old one keeps verifying until its tokens have expired. Returns the new kid. */
  rotate(): { kid: string; previous: string | undefined } {
    const now = this.deps.clock.now()
    const previous = this.deps.db.select({ kid: signingKeys.kid }).from(signingKeys).where(isNull(signingKeys.rotatedAt)).all()
    const kid = this.insertNewKey()
    for (const p of previous) {
      this.deps.db
        .update(signingKeys)
        .set({ rotatedAt: now, expiresAt: now + this.deps.config.jwt.accessTtlMs + ROTATION_SKEW_MS })
        .where(and(eq(signingKeys.kid, p.kid), isNull(signingKeys.rotatedAt)))
        .run()
    }
    this.load()
    return { kid, previous: previous[0]?.kid }
  }

  /** The public JWKS: current and still-valid previous keys. */
  jwks(): { keys: JWK[] } {
    const now = this.deps.clock.now()
    return { keys: [...this.verifiers.values()].filter((k) => k.expiresAt === null || k.expiresAt > now).map((k) => k.publicJwk) }
  }

  /** Signs an access token for a session. */
  async sign(sub: string, sid: string, extra: Record<string, unknown> = {}): Promise<{ token: string; expiresIn: number }> {
    const k = this.current
    if (!k?.privateKey) throw new Error('no signing key loaded')
    const iat = Math.floor(this.deps.clock.now() / 1000)
    const ttl = Math.floor(this.deps.config.jwt.accessTtlMs / 1000)
    const token = await new SignJWT({ ...extra, sid })
      .setProtectedHeader({ alg: k.alg, kid: k.kid, typ: 'JWT' })
      .setIssuer(this.deps.config.publicUrl)
      .setAudience(this.deps.config.jwt.audience)
      .setSubject(sub)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ttl)
      .setJti(randomToken(16))
      .sign(k.privateKey)
    return { token, expiresIn: ttl }
  }

  /**
   * Verifies an access token: pinned algorithms, issuer, audience, required exp/iat/sub/sid/jti, a known
   * and unexpired kid. Anything else is 401 `invalid_token`.
   */
  async verify(token: string): Promise<AccessClaims> {
    if (token.length > 4096) throw unauthorized('invalid_token', 'The access token is not valid.')
    try {
      const { payload } = await jwtVerify(
        token,
        async (header) => {
          const kid = header.kid
          if (!kid) throw new Error('no kid')
          let k = this.verifiers.get(kid)
          if (!k && this.deps.clock.now() - this.lastLoad > RELOAD_MIN_INTERVAL_MS) {
            this.load()
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
          requiredClaims: ['exp', 'iat', 'sub', 'sid', 'jti'],
          currentDate: new Date(this.deps.clock.now()),
          clockTolerance: 5,
          typ: 'JWT',
        },
      )
      if (typeof payload.sid !== 'string' || typeof payload.sub !== 'string') throw new Error('claims')
      return payload as AccessClaims
    } catch {
      throw unauthorized('invalid_token', 'The access token is not valid.')
    }
  }
}
