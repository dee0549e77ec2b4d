/** Accounts routes: register, login, refresh, logout, email verification, password reset, JWKS. */
import { Elysia, t } from 'elysia'
import type { Config } from '../../config'
import { unauthorized } from '../../lib/errors'
import { errors, NoContent, optionalBody } from '../../lib/schemas'
import type { Authenticator } from '../../plugins/auth'
import { metaOf } from '../../plugins/request-context'
import type { KeyService } from '../keys/service'
import type { LockoutService } from '../lockout/service'
import type { MfaServices } from '../mfa/services'
import { AuthenticationResponseSchema } from '../mfa/model'
import { AppError } from '../../lib/errors'
import type { SessionService } from '../sessions/service'
import { clearedSessionCookie, readSessionCookie, sessionCookie } from './cookies'
import { ForgotBody, Jwks, LoginBody, MfaChallengeResponse, RefreshBody, RegisterBody, ResetBody, TokenBody, TokenResponse, UserSchema } from './model'
import type { AuthService, TokenPair } from './service'

export interface AuthControllerDeps {
  config: Config
  auth: AuthService
  sessions: SessionService
  signer: KeyService
  authn: Authenticator
  lockout: LockoutService
  mfa: MfaServices
}

/** Shapes a token pair for the transport: with cookies the refresh token goes into the cookie only. */
export function tokenBody(config: Config, pair: TokenPair, transport: 'bearer' | 'cookie', set: { headers: Record<string, unknown> }) {
  const body = { accessToken: pair.accessToken, tokenType: pair.tokenType, expiresIn: pair.expiresIn, user: pair.user }
  if (transport === 'cookie') {
    set.headers['set-cookie'] = sessionCookie(config, pair.refreshToken)
    return body
  }
  return { ...body, refreshToken: pair.refreshToken }
}

export function authController(d: AuthControllerDeps) {
  const { config } = d
  return new Elysia({ name: 'auth-routes', detail: { tags: ['auth'] } })
    .get('/.well-known/jwks.json', async () => await d.signer.jwks(), {
      response: { 200: Jwks },
      detail: { tags: ['auth'], summary: 'Public keys that verify access tokens (current and previous kid)' },
    })
    .group('/v1/auth', (g) =>
      g
        .post(
          '/register',
          async ({ body, request, set }) => {
            const user = await d.auth.register(body, metaOf(request))
            set.status = 201
            return { user }
          },
          {
            body: RegisterBody,
            response: { 201: t.Object({ user: UserSchema }), ...errors(400, 409, 415, 422, 429) },
            detail: { summary: 'Create an account (422 weak_password lists the reasons; a verification mail is sent)' },
          },
        )
        .post(
          '/login',
          async ({ body, request, set }) => {
            const transport = body.transport ?? 'bearer'
            const r = await d.auth.login({ email: body.email, password: body.password, transport }, metaOf(request))
            if (r.kind === 'mfa') return { mfaRequired: true as const, mfaToken: r.mfaToken, methods: r.methods }
            return tokenBody(config, r, transport, set)
          },
          {
            body: LoginBody,
            response: { 200: t.Union([TokenResponse, MfaChallengeResponse]), ...errors(400, 401, 415, 422, 429) },
            detail: { summary: 'Sign in with email and password: tokens, or an MFA challenge when a second factor is enrolled' },
          },
        )
        .post(
          '/refresh',
          async ({ body, request, set }) => {
            // CSRF checks are skipped for requests carrying Authorization, so such a request may not use the cookie.
            const fromCookie = request.headers.get('authorization') ? undefined : readSessionCookie(config, request.headers.get('cookie'))
            const presented = body?.refreshToken ?? fromCookie
            if (!presented) throw unauthorized('invalid_refresh_token', 'A refresh token is required (body or session cookie).')
            const pair = await d.auth.refresh(presented, metaOf(request))
            return tokenBody(config, pair, body?.refreshToken ? 'bearer' : 'cookie', set)
          },
          {
            ...optionalBody(RefreshBody),
            response: { 200: TokenResponse, ...errors(400, 401, 415, 422, 429) },
            detail: { summary: 'Spend a refresh token for a new pair; a spent token presented again revokes the whole session' },
          },
        )
        .post(
          '/logout',
          async ({ request, set }) => {
            const meta = metaOf(request)
            if (request.headers.get('authorization')) {
              const p = await d.authn.authenticate(request)
              await d.auth.logout(p.session, meta)
            } else {
              const cookie = readSessionCookie(config, request.headers.get('cookie'))
              const session = cookie ? await d.sessions.sessionOfRefreshToken(cookie) : undefined
              if (!session) throw unauthorized()
              await d.auth.logout(session, meta)
            }
            if (request.headers.get('cookie')) {
              set.headers['set-cookie'] = clearedSessionCookie(config)
              // W3C Clear Site Data: the browser also drops every other cookie of this origin.
              set.headers['clear-site-data'] = '"cookies"'
            }
            set.status = 204
          },
          {
            response: { 204: NoContent, ...errors(401, 429) },
            detail: { summary: 'End the current session (bearer token or session cookie)', security: [{ bearer: [] }] },
          },
        )
        .post(
          '/logout-all',
          async ({ request, set }) => {
            const p = await d.authn.authenticate(request)
            await d.auth.logoutAll(p.userId, metaOf(request))
            if (request.headers.get('cookie')) {
              set.headers['set-cookie'] = clearedSessionCookie(config)
              // W3C Clear Site Data: the browser also drops every other cookie of this origin.
              set.headers['clear-site-data'] = '"cookies"'
            }
            set.status = 204
          },
          {
            response: { 204: NoContent, ...errors(401, 429) },
            detail: { summary: 'End every session of the signed-in user', security: [{ bearer: [] }] },
          },
        )
        .post(
          '/password/forgot',
          async ({ body, request, set }) => {
            await d.auth.forgotPassword(body.email, metaOf(request))
            set.status = 202
            return { status: 'accepted' as const }
          },
          {
            body: ForgotBody,
            response: { 202: t.Object({ status: t.Literal('accepted') }), ...errors(400, 415, 422, 429) },
            detail: { summary: 'Mail a reset link if the account exists (always 202: no account oracle)' },
          },
        )
        .post(
          '/password/reset',
          async ({ body, request, set }) => {
            await d.auth.resetPassword(body.token, body.password, metaOf(request))
            set.status = 204
          },
          {
            body: ResetBody,
            response: { 204: NoContent, ...errors(400, 415, 422, 429) },
            detail: { summary: 'Set a new password with a single-use reset token; ends every session' },
          },
        )
        .post(
          '/mfa/verify',
          async ({ body, request, set }) => {
            const meta = metaOf(request)
            const { mfaToken, transport, ...proof } = body
            const { userId, amr } = await d.mfa.login.completeMfa(mfaToken, proof, meta)
            const user = await d.auth.findById(userId)
            if (!user || user.status !== 'active') throw unauthorized('invalid_mfa_token', 'The MFA step is not valid.')
            const pair = await d.auth.issueSession(user, { transport: transport ?? 'bearer', amr, meta })
            return tokenBody(config, pair, transport ?? 'bearer', set)
          },
          {
            body: t.Object(
              {
                mfaToken: t.String({ minLength: 20, maxLength: 128 }),
                totp: t.Optional(t.String({ maxLength: 16 })),
                recoveryCode: t.Optional(t.String({ maxLength: 32 })),
                webauthn: t.Optional(AuthenticationResponseSchema),
                transport: t.Optional(t.Union([t.Literal('bearer'), t.Literal('cookie')])),
              },
              { additionalProperties: false },
            ),
            response: { 200: TokenResponse, ...errors(400, 401, 415, 422, 429) },
            detail: { summary: 'Complete a sign-in with exactly one second factor (TOTP code, recovery code or passkey assertion)' },
          },
        )
        .post(
          '/passkey/verify',
          async ({ body, request, set }) => {
            const meta = metaOf(request)
            const r = await d.mfa.passkeys.verifyAuthentication(body.response, {}, meta)
            if (!r.userVerified) throw unauthorized('user_verification_required', 'Passwordless sign-in needs a passkey that verifies the user (PIN or biometrics).')
            const user = await d.auth.findById(r.userId)
            if (!user || user.status !== 'active') throw unauthorized('invalid_credentials', 'The passkey is not valid.')
            const transport = body.transport ?? 'bearer'
            const pair = await d.auth.issueSession(user, { transport, amr: ['webauthn', 'uv'], meta })
            return tokenBody(config, pair, transport, set)
          },
          {
            body: t.Object(
              { response: AuthenticationResponseSchema, transport: t.Optional(t.Union([t.Literal('bearer'), t.Literal('cookie')])) },
              { additionalProperties: false },
            ),
            response: { 200: TokenResponse, ...errors(400, 401, 415, 422, 429) },
            detail: { summary: 'Passwordless sign-in with a discoverable passkey (user verification counts as both factors)' },
          },
        )
        .post(
          '/unlock',
          async ({ body, request, set }) => {
            if (!await d.lockout.unlockWithToken(body.token, metaOf(request))) throw new AppError(400, 'invalid_token', 'The token is not valid or has expired.')
            set.status = 204
          },
          {
            body: TokenBody,
            response: { 204: NoContent, ...errors(400, 415, 422, 429) },
            detail: { summary: 'Unlock a locked account with the single-use token from the lockout mail' },
          },
        )
        .post(
          '/email/verify',
          async ({ body, request, set }) => {
            await d.auth.verifyEmail(body.token, metaOf(request))
            set.status = 204
          },
          {
            body: TokenBody,
            response: { 204: NoContent, ...errors(400, 415, 422, 429) },
            detail: { summary: 'Confirm the email address with the mailed token' },
          },
        ),
    )
}
