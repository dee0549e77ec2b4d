/**
 * Passkeys (WebAuthn) with @simplewebauthn/server: registration by a signed-in user, and sign-in either
 * as a second factor (allowCredentials = the user's) or passwordless (discoverable credentials).
 * Challenges live in the `challenges` table, are single-use (claimed by a conditional UPDATE before
 * the signature is checked, so a replayed assertion finds nothing) and expire after five minutes.
 * Every library failure becomes a 400 `webauthn_failed`; garbage never reaches a 500.
 */
import { generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse } from '@simplewebauthn/server'
import type { AuthenticationResponseJSON, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON } from '@simplewebauthn/server'
import { and, asc, count, eq, gt, isNull, lt } from 'drizzle-orm'
import { challenges, passkeys, totpFactors } from '../../db/tables'
import { hashToken } from '../../lib/crypto'
import { AppError, conflict, notFound } from '../../lib/errors'
import { newId } from '../../lib/ids'
import type { RequestMeta } from '../audit/service'
import type { AuthenticationResponse, MfaDeps, PasskeyView, RegistrationResponse } from './model'
import type { RecoveryService } from './recovery-service'

export const CHALLENGE_TTL_MS = 5 * 60_000
const RP_NAME = 'Bulwark'
const MAX_NAME = 64

const failed = (detail = 'The passkey response could not be verified.') => new AppError(400, 'webauthn_failed', detail)
const badCredential = () => new AppError(401, 'invalid_credentials', 'The passkey is not recognised.')

type ChallengeKind = 'webauthn_register' | 'webauthn_login'
type PasskeyRow = typeof passkeys.$inferSelect

/** The challenge a client signed, read from its clientDataJSON; undefined if that is not JSON with a string challenge. */
function signedChallenge(clientDataJSON: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8'))
    const c = (parsed as { challenge?: unknown } | null)?.challenge
    return typeof c === 'string' && c.length > 0 && c.length <= 1024 ? c : undefined
  } catch {
    return undefined
  }
}

const toView = (r: PasskeyRow): PasskeyView => ({
  id: r.id,
  name: r.name,
  deviceType: r.deviceType ?? null,
  backedUp: r.backedUp,
  transports: Array.isArray(r.transports) ? r.transports : [],
  createdAt: new Date(r.createdAt).toISOString(),
  lastUsedAt: r.lastUsedAt === null ? null : new Date(r.lastUsedAt).toISOString(),
})

export class PasskeyService {
  constructor(
    private readonly deps: MfaDeps,
    private readonly recovery: RecoveryService,
  ) {}

  private get rpId() {
    return this.deps.config.webauthn.rpId
  }

  private challengeHash(challenge: string) {
    return hashToken(this.deps.keys.tokenHash, `webauthn:${challenge}`)
  }

  /** Stores a challenge (and sweeps expired ones, which keeps the table small without a timer). */
  private async storeChallenge(kind: ChallengeKind, challenge: string, userId: string | null, data?: Record<string, unknown>): Promise<string> {
    const now = this.deps.clock.now()
    const id = newId()
    await this.deps.db.delete(challenges).where(lt(challenges.expiresAt, now))
    await this.deps.db
      .insert(challenges)
      .values({ id, kind, userId, secretHash: this.challengeHash(challenge), data: data ?? null, createdAt: now, expiresAt: now + CHALLENGE_TTL_MS })
      
    return id
  }

  /** Claims the challenge the response signed: unexpired, unused, of this kind; it is spent whatever happens next. */
  private async claimChallenge(kind: ChallengeKind, clientDataJSON: string) {
    const challenge = signedChallenge(clientDataJSON)
    if (!challenge) throw failed('The client data is not readable.')
    const now = this.deps.clock.now()
    const row = (await this.deps.db
      .update(challenges)
      .set({ usedAt: now })
      .where(and(eq(challenges.secretHash, this.challengeHash(challenge)), eq(challenges.kind, kind), isNull(challenges.usedAt), gt(challenges.expiresAt, now)))
      .returning()
      )[0]
    if (!row) throw failed('The challenge is unknown, expired or already used.')
    return { challenge, row }
  }

  private async userPasskeys(userId: string): Promise<PasskeyRow[]> {
    return await this.deps.db.select().from(passkeys).where(eq(passkeys.userId, userId)).orderBy(asc(passkeys.createdAt), asc(passkeys.id))
  }

  /** Options for navigator.credentials.create(); the user's existing credentials are excluded. */
  async registrationOptions(user: { id: string; email: string; name?: string | null }): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const options = await generateRegistrationOptions({
      rpName: RP_NAME,
      rpID: this.rpId,
      userName: user.email,
      userDisplayName: user.name ?? user.email,
      userID: new TextEncoder().encode(user.id),
      timeout: CHALLENGE_TTL_MS,
      attestationType: 'none',
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
      excludeCredentials: (await this.userPasskeys(user.id)).map((p) => ({ id: p.credentialId, transports: p.transports ?? undefined })),
    })
    await this.storeChallenge('webauthn_register', options.challenge, user.id)
    return options
  }

  /** Verifies a registration response against the user's pending challenge and stores the credential. */
  async verifyRegistration(userId: string, response: RegistrationResponse, name?: string, meta: RequestMeta = {}): Promise<PasskeyView> {
    const { challenge, row: ch } = await this.claimChallenge('webauthn_register', response.response.clientDataJSON)
    if (ch.userId !== userId) throw failed('The challenge belongs to another ceremony.')
    let info
    try {
      const r = await verifyRegistrationResponse({
        response: response as RegistrationResponseJSON,
        expectedChallenge: challenge,
        expectedOrigin: this.deps.config.webauthn.origins,
        expectedRPID: this.rpId,
        requireUserVerification: false,
      })
      if (!r.verified) throw new Error('not verified')
      // The library only compares id with rawId; the id the client reports must be the one the authenticator attested.
      if (r.registrationInfo.credential.id !== response.id) throw new Error('credential id mismatch')
      info = r.registrationInfo
    } catch (err) {
      this.deps.logger.info({ userId, reason: (err as Error).message?.slice(0, 200) }, 'passkey registration refused')
      throw failed()
    }
    const credentialId = info.credential.id
    if ((await this.deps.db.select({ id: passkeys.id }).from(passkeys).where(eq(passkeys.credentialId, credentialId)).limit(1))[0]) {
      throw conflict('This passkey is already registered.', 'passkey_exists')
    }
    const now = this.deps.clock.now()
    const existing = (await this.userPasskeys(userId)).length
    const row: PasskeyRow = {
      id: newId(),
      credentialId,
      userId,
      name: (name?.trim() || `Passkey ${existing + 1}`).slice(0, MAX_NAME),
      publicKey: Buffer.from(info.credential.publicKey),
      counter: info.credential.counter,
      transports: (response.response.transports ?? []).slice(0, 8),
      deviceType: info.credentialDeviceType,
      backedUp: info.credentialBackedUp,
      createdAt: now,
      lastUsedAt: null,
    }
    await this.deps.db.insert(passkeys).values(row)
    await this.deps.audit.record({ type: 'passkey_added', outcome: 'success', actorId: userId, targetId: userId, details: { passkeyId: row.id } }, meta)
    return toView(row)
  }

  /**
   * Options for navigator.credentials.get(). With a user id (second factor) the challenge is bound to
   * that user and allowCredentials lists their passkeys; without one (passwordless) the list is empty so
   * the browser offers discoverable credentials. Returns the challenge row id, which identifies the attempt.
   */
  async authenticationOptions(opts: { userId?: string; data?: Record<string, unknown> } = {}): Promise<{ options: PublicKeyCredentialRequestOptionsJSON; challengeId: string }> {
    const allow = opts.userId ? (await this.userPasskeys(opts.userId)).map((p) => ({ id: p.credentialId, transports: p.transports ?? undefined })) : undefined
    const options = await generateAuthenticationOptions({ rpID: this.rpId, allowCredentials: allow, userVerification: 'preferred', timeout: CHALLENGE_TTL_MS })
    const challengeId = await this.storeChallenge('webauthn_login', options.challenge, opts.userId ?? null, opts.data)
    return { options, challengeId }
  }

  /**
   * Verifies an assertion. `userId` (second factor) requires the credential and the challenge to be that
   * user's; `challengeId` pins the exact attempt. A signature counter that does not advance (when either
   * side is non-zero, WebAuthn §6.1.1) means a cloned authenticator: refused and recorded.
   */
  async verifyAuthentication(
    response: AuthenticationResponse,
    opts: { userId?: string; challengeId?: string } = {},
    meta: RequestMeta = {},
  ): Promise<{ userId: string; userVerified: boolean; passkeyId: string }> {
    const { challenge, row: ch } = await this.claimChallenge('webauthn_login', response.response.clientDataJSON)
    if (opts.challengeId !== undefined && ch.id !== opts.challengeId) throw failed('The challenge belongs to another sign-in attempt.')
    if (ch.userId !== null && ch.userId !== (opts.userId ?? null)) throw failed('The challenge belongs to another sign-in attempt.')
    if (opts.userId !== undefined && ch.userId === null) throw failed('The challenge belongs to another sign-in attempt.')
    const pk = (await this.deps.db.select().from(passkeys).where(eq(passkeys.credentialId, response.id)).limit(1))[0]
    if (!pk || (opts.userId !== undefined && pk.userId !== opts.userId)) throw badCredential()
    const handle = response.response.userHandle
    if (handle && Buffer.from(handle, 'base64url').toString('utf8') !== pk.userId) throw badCredential()
    let info
    try {
      // Counter 0 here: the library would throw on a stale counter, and we want to tell that case apart.
      const r = await verifyAuthenticationResponse({
        response: response as AuthenticationResponseJSON,
        expectedChallenge: challenge,
        expectedOrigin: this.deps.config.webauthn.origins,
        expectedRPID: this.rpId,
        credential: { id: pk.credentialId, publicKey: new Uint8Array(pk.publicKey), counter: 0, transports: pk.transports ?? undefined },
        requireUserVerification: false,
      })
      if (!r.verified) throw new Error('not verified')
      info = r.authenticationInfo
    } catch (err) {
      this.deps.logger.info({ passkeyId: pk.id, reason: (err as Error).message?.slice(0, 200) }, 'passkey assertion refused')
      throw failed()
    }
    const next = info.newCounter
    if ((next > 0 || pk.counter > 0) && next <= pk.counter) {
      await this.deps.audit.record(
        { type: 'passkey_cloned_suspected', outcome: 'failure', actorId: pk.userId, targetId: pk.userId, details: { passkeyId: pk.id, stored: pk.counter, received: next } },
        meta,
      )
      throw badCredential()
    }
    // Conditional on the counter we read: of two concurrent assertions with the same counter only one lands.
    const updated = await this.deps.db
      .update(passkeys)
      .set({ counter: next, lastUsedAt: this.deps.clock.now(), backedUp: info.credentialBackedUp })
      .where(and(eq(passkeys.id, pk.id), eq(passkeys.counter, pk.counter)))
      .returning({ id: passkeys.id })
      
    if (updated.length !== 1 && next > 0) throw badCredential()
    return { userId: pk.userId, userVerified: info.userVerified, passkeyId: pk.id }
  }

  /** The user's passkeys, oldest first. */
  async list(userId: string): Promise<PasskeyView[]> {
    return (await this.userPasskeys(userId)).map(toView)
  }

  /** Number of passkeys of a user. */
  async count(userId: string): Promise<number> {
    return (await this.deps.db.select({ n: await count() }).from(passkeys).where(eq(passkeys.userId, userId)).limit(1))[0]?.n ?? 0
  }

  /** Renames one of the user's passkeys; someone else's is a 404. */
  async rename(userId: string, passkeyId: string, name: string): Promise<PasskeyView> {
    const row = (await this.deps.db
      .update(passkeys)
      .set({ name: name.trim().slice(0, MAX_NAME) || 'Passkey' })
      .where(and(eq(passkeys.id, passkeyId), eq(passkeys.userId, userId)))
      .returning()
      )[0]
    if (!row) throw notFound('No such passkey.')
    return toView(row)
  }

  /** Deletes one of the user's passkeys (someone else's is a 404); without any factor left, recovery codes go too. */
  async delete(userId: string, passkeyId: string, meta: RequestMeta = {}): Promise<void> {
    const gone = await this.deps.db
      .delete(passkeys)
      .where(and(eq(passkeys.id, passkeyId), eq(passkeys.userId, userId)))
      .returning({ id: passkeys.id })
      
    if (gone.length === 0) throw notFound('No such passkey.')
    const totp = (await this.deps.db.select({ status: totpFactors.status }).from(totpFactors).where(eq(totpFactors.userId, userId)).limit(1))[0]
    if (await this.count(userId) === 0 && totp?.status !== 'active') await this.recovery.clear(userId)
    await this.deps.audit.record({ type: 'passkey_removed', outcome: 'info', actorId: userId, targetId: userId, details: { passkeyId } }, meta)
  }
}
