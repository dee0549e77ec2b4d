/**
 * Schemas and shared types of the MFA module. The WebAuthn response schemas bound every string, so an
 * oversized or oddly shaped payload is refused by validation before @simplewebauthn/server parses it.
 */
import { t, type Static } from 'elysia'
import { JsonInteger } from '../../lib/schemas'
import type { CoreDeps } from '../../deps'
import type { AuditService } from '../audit/service'

/** What the MFA services are handed. */
export interface MfaDeps extends CoreDeps {
  audit: AuditService
}

/** base64url, padding tolerated (some clients pad). */
const B64U = '^[A-Za-z0-9_-]*={0,2}$'
const b64u = (maxLength: number, minLength = 1) => t.String({ minLength, maxLength, pattern: B64U })

/** Credential ids are at most 1023 bytes (WebAuthn L3 §5.1), i.e. 1364 base64url characters. */
const CredentialId = b64u(1400)
const Transports = t.Array(t.String({ maxLength: 32 }), { maxItems: 8 })
const Attachment = t.Union([t.Literal('platform'), t.Literal('cross-platform')])

/**
 * Extension outputs a browser may report. Bulwark asks for none, so only the common ones are accepted,
 * each with bounded values.
 */
const ClientExtensionResults = t.Object(
  {
    appid: t.Optional(t.Boolean()),
    credProps: t.Optional(t.Object({ rk: t.Optional(t.Boolean()) }, { additionalProperties: false })),
    hmacCreateSecret: t.Optional(t.Boolean()),
    prf: t.Optional(
      t.Object(
        {
          enabled: t.Optional(t.Boolean()),
          results: t.Optional(t.Object({ first: b64u(256, 0), second: t.Optional(b64u(256, 0)) }, { additionalProperties: false })),
        },
        { additionalProperties: false },
      ),
    ),
    largeBlob: t.Optional(t.Object({ supported: t.Optional(t.Boolean()), written: t.Optional(t.Boolean()) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
)

/** The fields both WebAuthn response shapes share. */
const CredentialEnvelope = {
  id: CredentialId,
  rawId: CredentialId,
  type: t.Literal('public-key'),
  authenticatorAttachment: t.Optional(Attachment),
  clientExtensionResults: ClientExtensionResults,
}

/** `RegistrationResponseJSON` from navigator.credentials.create(), bounded. */
export const RegistrationResponseSchema = t.Object(
  {
    ...CredentialEnvelope,
    response: t.Object(
      {
        clientDataJSON: b64u(4096),
        attestationObject: b64u(16384),
        authenticatorData: t.Optional(b64u(8192)),
        transports: t.Optional(Transports),
        publicKeyAlgorithm: t.Optional(JsonInteger({ minimum: -65536, maximum: 65536 })),
        publicKey: t.Optional(b64u(4096)),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
)
export type RegistrationResponse = Static<typeof RegistrationResponseSchema>

/** `AuthenticationResponseJSON` from navigator.credentials.get(), bounded. */
export const AuthenticationResponseSchema = t.Object(
  {
    ...CredentialEnvelope,
    response: t.Object(
      {
        clientDataJSON: b64u(4096),
        authenticatorData: b64u(8192),
        // ML-DSA-44 signatures are 2420 bytes; RSA-4096 512.
        signature: b64u(4096),
        userHandle: t.Optional(b64u(128, 0)),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
)
export type AuthenticationResponse = Static<typeof AuthenticationResponseSchema>

/** A TOTP code as typed: 6 or 8 digits (spaces are the client's business). */
export const TotpCode = t.String({ minLength: 6, maxLength: 8, pattern: '^[0-9]{6,8}$' })
/** A recovery code as typed (`xxxxx-xxxxx`, case and separators tolerated). */
export const RecoveryCode = t.String({ minLength: 10, maxLength: 32 })

export const RecoveryCodesBody = t.Object({ recoveryCodes: t.Array(t.String({ maxLength: 16 }), { minItems: 10, maxItems: 10 }) })

export const PasskeyView = t.Object({
  id: t.String(),
  name: t.String(),
  deviceType: t.Union([t.String(), t.Null()]),
  backedUp: t.Boolean(),
  transports: t.Array(t.String()),
  createdAt: t.String(),
  lastUsedAt: t.Union([t.String(), t.Null()]),
})
export type PasskeyView = Static<typeof PasskeyView>

/** Who is signed in, as the auth macros resolve it. */
export type { Principal } from '../../plugins/auth-macros'
