/**
 * MFA routes of the signed-in user (TOTP, recovery codes, passkeys) and the passwordless passkey
 * options. Not wired by itself: the composition root passes the auth plugin (the `{ auth: true }`
 * macro resolving `principal`) and the services. Adding or removing a factor and regenerating recovery
 * codes need a recent proof (step-up): `principal.authTime` within BULWARK_STEP_UP_TTL (the first factor
 * of a session confined to enrolment excepted).
 */
import { Elysia, t } from 'elysia'
import type { AuthMacros } from '../../plugins/auth-macros'
import { errors, NoContent, optionalBody } from '../../lib/schemas'
import { conflict, notFound, unauthorized } from '../../lib/errors'
import { isId } from '../../lib/ids'
import { metaOf } from '../../plugins/request-context'
import { type MfaDeps, PasskeyView, type Principal, RecoveryCodesBody, RegistrationResponseSchema } from './model'
import type { MfaServices } from './services'
import { requireRecentProof } from './step-up'


const PublicKeyOptions = t.Object({ challenge: t.String() }, { additionalProperties: true, description: 'WebAuthn options for navigator.credentials (JSON form)' })
const Name = t.String({ minLength: 1, maxLength: 64 })
const Params = t.Object({ id: t.String({ maxLength: 64 }) }, { additionalProperties: false })

/**
 * The MFA controller over the auth macros, services and deps. Every route here is open to sessions limited to
 * MFA enrolment (`auth: 'mfa-enrolment'`): they are how such a user gets a factor.
 */
export function mfaController(
  auth: AuthMacros,
  services: MfaServices,
  deps: Pick<MfaDeps, 'config' | 'clock'>,
  /** Called when a factor is activated, with the session that did it and the factor's amr value; awaited, so the answer follows the session change. */
  onEnrolled: (sessionId: string, method: 'otp' | 'webauthn') => Promise<void> | void = () => {},
) {
  const { totp, recovery, passkeys, login } = services

  /** Sensitive changes need a recent proof of presence, not just a live session. */
  const requireStepUp = (p: Principal) => requireRecentProof(p, deps.clock.now(), deps.config.tokens.stepUpTtlMs)
  /**
   * Adding a factor needs the same recent proof as removing one: otherwise a stolen or stale session could
   * enrol its own authenticator (and take the recovery codes), locking the owner out. The one exception is
   * the first factor of a session that a role confines to enrolment: that session exists to get one, and
   * its user has no factor to prove.
   */
  const requireStepUpToAdd = async (p: Principal) => {
    if (p.mfaPending && !(await login.hasActiveFactor(p.userId))) return
    requireStepUp(p)
  }
  const userOf = async (p: Principal) => {
    const u = await login.account(p.userId)
    if (!u) throw unauthorized()
    return u
  }

  return new Elysia({ name: 'mfa', detail: { tags: ['mfa'] } })
    .use(auth)
    .post(
      '/v1/me/mfa/totp',
      async ({ principal }) => {
        await requireStepUpToAdd(principal)
        const u = await userOf(principal)
        return await totp.enroll(u.id, u.email)
      },
      {
        auth: 'mfa-enrolment',
        response: { 200: t.Object({ secret: t.String(), otpauthUrl: t.String() }), ...errors(409) },
        detail: { summary: 'Start enrolling an authenticator app (pending until confirmed; needs a recent sign-in)' },
      },
    )
    .post('/v1/me/mfa/totp/confirm', async ({ principal, body, request }) => {
      await requireStepUpToAdd(principal)
      const r = await totp.confirm(principal.userId, body.code, metaOf(request))
      await onEnrolled(principal.sessionId, 'otp')
      return r
    }, {
      auth: 'mfa-enrolment',
      body: t.Object({ code: t.String({ minLength: 1, maxLength: 16 }) }, { additionalProperties: false }),
      response: { 200: RecoveryCodesBody, ...errors(409, 422) },
      detail: { summary: 'Confirm the authenticator app with a first code (needs a recent sign-in); returns 10 recovery codes, shown once' },
    })
    .delete(
      '/v1/me/mfa/totp',
      async ({ principal, request, set }) => {
        requireStepUp(principal)
        await totp.remove(principal.userId, metaOf(request))
        set.status = 204
      },
      { auth: 'mfa-enrolment', response: { 204: NoContent, ...errors(401, 404, 409, 429) }, detail: { summary: 'Remove the authenticator app (needs a recent sign-in)' } },
    )
    .post(
      '/v1/me/mfa/recovery-codes',
      async ({ principal, request }) => {
        requireStepUp(principal)
        if (!(await login.hasActiveFactor(principal.userId))) throw conflict('Recovery codes need a second factor; add one first.', 'no_second_factor')
        return { recoveryCodes: await recovery.regenerate(principal.userId, metaOf(request)) }
      },
      {
        auth: 'mfa-enrolment',
        response: { 200: RecoveryCodesBody, ...errors(401, 409) },
        detail: { summary: 'Replace the recovery codes with 10 new ones (needs a recent sign-in); the old ones stop working' },
      },
    )
    .post(
      '/v1/me/passkeys/options',
      async ({ principal }) => {
        await requireStepUpToAdd(principal)
        return passkeys.registrationOptions(await userOf(principal))
      },
      {
      auth: 'mfa-enrolment',
        response: { 200: PublicKeyOptions, ...errors(401, 429) },
        detail: { summary: 'WebAuthn registration options for a new passkey (needs a recent sign-in)' },
      },
    )
    .post(
      '/v1/me/passkeys',
      async ({ principal, body, request, set }) => {
        await requireStepUpToAdd(principal)
        const view = await passkeys.verifyRegistration(principal.userId, body.response, body.name, metaOf(request))
        await onEnrolled(principal.sessionId, 'webauthn')
        set.status = 201
        return view
      },
      {
        auth: 'mfa-enrolment',
        body: t.Object({ response: RegistrationResponseSchema, name: t.Optional(Name) }, { additionalProperties: false }),
        response: { 201: PasskeyView, ...errors(400, 409) },
        detail: { summary: 'Register a passkey from the navigator.credentials.create() response (needs a recent sign-in)' },
      },
    )
    .get('/v1/me/passkeys', async ({ principal }) => ({ items: await passkeys.list(principal.userId), nextCursor: null }), {
      auth: 'mfa-enrolment',
      response: { 200: t.Object({ items: t.Array(PasskeyView), nextCursor: t.Null() }) },
      detail: { summary: 'Your passkeys' },
    })
    .patch(
      '/v1/me/passkeys/:id',
      ({ principal, params, body }) => {
        if (!isId(params.id)) throw notFound('No such passkey.')
        return passkeys.rename(principal.userId, params.id, body.name)
      },
      {
        auth: 'mfa-enrolment',
        params: Params,
        body: t.Object({ name: Name }, { additionalProperties: false }),
        response: { 200: PasskeyView, ...errors(404) },
        detail: { summary: 'Rename one of your passkeys' },
      },
    )
    .delete(
      '/v1/me/passkeys/:id',
      async ({ principal, params, request, set }) => {
        requireStepUp(principal)
        if (!isId(params.id)) throw notFound('No such passkey.')
        await passkeys.delete(principal.userId, params.id, metaOf(request))
        set.status = 204
      },
      { auth: 'mfa-enrolment', params: Params, response: { 204: NoContent, ...errors(401, 404, 422, 429) }, detail: { summary: 'Delete one of your passkeys (needs a recent sign-in)' } },
    )
    .post(
      '/v1/auth/passkey/options',
      async ({ body }) => {
        // With an mfaToken: the second-factor step of a password login; without: passwordless sign-in.
        if (body?.mfaToken) return login.webauthnOptions(body.mfaToken)
        return (await passkeys.authenticationOptions()).options
      },
      {
        ...optionalBody(t.Object({ mfaToken: t.Optional(t.String({ minLength: 1, maxLength: 128 })) }, { additionalProperties: false })),
        response: { 200: PublicKeyOptions, ...errors(401, 409) },
        detail: { summary: 'WebAuthn authentication options: passwordless, or the passkey step of a login with {mfaToken}' },
      },
    )
}
