/** Request and response schemas of the accounts routes. */
import { t } from 'elysia'
import { Email, OpaqueToken, Password, JsonInteger } from '../../lib/schemas'

export const UserSchema = t.Object({
  id: t.String(),
  email: t.String(),
  name: t.Union([t.String(), t.Null()]),
  emailVerified: t.Boolean(),
  createdAt: t.String({ format: 'date-time' }),
})

export const RegisterBody = t.Object(
  { email: Email, password: Password, name: t.Optional(t.String({ minLength: 1, maxLength: 100 })) },
  { additionalProperties: false },
)

export const LoginBody = t.Object(
  { email: Email, password: Password, transport: t.Optional(t.Union([t.Literal('bearer'), t.Literal('cookie')])) },
  { additionalProperties: false },
)

export const TokenResponse = t.Object({
  accessToken: t.String(),
  refreshToken: t.Optional(t.String({ description: 'absent with transport "cookie": it is in the session cookie' })),
  tokenType: t.Literal('Bearer'),
  expiresIn: JsonInteger({ description: 'seconds until the access token expires' }),
  user: UserSchema,
})

export const MfaChallengeResponse = t.Object({
  mfaRequired: t.Literal(true),
  mfaToken: t.String(),
  methods: t.Array(t.String()),
})

export const RefreshBody = t.Object({ refreshToken: t.Optional(OpaqueToken) }, { additionalProperties: false })
export const TokenBody = t.Object({ token: OpaqueToken }, { additionalProperties: false })
export const ForgotBody = t.Object({ email: Email }, { additionalProperties: false })
export const ResetBody = t.Object({ token: OpaqueToken, password: Password }, { additionalProperties: false })

export const Jwks = t.Object({ keys: t.Array(t.Record(t.String(), t.Unknown())) })
