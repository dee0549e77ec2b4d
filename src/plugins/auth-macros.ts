/**
 * The contract between authentication and the controllers: the `principal` shape and the route macros
 * `{ auth: true }` (any signed-in caller whose session is not limited to MFA enrolment),
 * `{ auth: 'mfa-enrolment' }` (also allowed while a role's required second factor is not yet enrolled),
 * and `{ permission: 'users:read' }` (a registered permission, else 403). `authMacros(resolve)` builds
 * them from one function that turns a request into a principal (or throws 401); the real plugin
 * (src/plugins/auth.ts: JWT + session checks) and the test stand-in differ only in that function.
 * Hooks are arrow functions (method shorthand breaks when minified).
 */
import { Elysia } from 'elysia'
import { AppError, forbidden } from '../lib/errors'
import { holds, type Permission } from '../lib/permissions'
import { noteDenial } from '../modules/audit/denials'

export interface Principal {
  userId: string
  sessionId: string
  level: number
  /** Effective registered permissions (patterns expanded). */
  permissions: string[]
  roles: string[]
  amr: string[]
  /** When a password or second factor was last proven in this session (ms). */
  authTime: number
  /** The session is limited to MFA enrolment (a role requires MFA and none is enrolled). */
  mfaPending: boolean
  /** Set for an OAuth client (client-credentials token): `userId` is then the client id and there is no session. */
  clientId?: string
  /** Set when the caller authenticated with an API key (`bwk_…`) instead of a session. */
  apiKeyId?: string
}

/** 403 for a service client on a route about the signed-in user ("me", sessions, factors). */
export const userRequired = () => forbidden('This route is about a signed-in user; a client-credentials token cannot use it.')

/** Turns a request into its principal; throws AppError 401 when the caller is not signed in. */
export type PrincipalResolver = (request: Request) => Principal | Promise<Principal>

export const mfaEnrollmentRequired = () =>
  new AppError(403, 'mfa_enrollment_required', 'A role you hold requires a second factor: enrol one (TOTP or a passkey) before using this route.')

/** Builds the macro plugin from a principal resolver. */
export function authMacros(resolvePrincipal: PrincipalResolver, name = 'auth-macros') {
  return new Elysia({ name }).macro({
    auth: (mode: true | 'mfa-enrolment') => ({
      detail: { security: [{ bearer: [] }] },
      resolve: async ({ request }) => {
        const principal = await resolvePrincipal(request)
        if (principal.clientId !== undefined) throw userRequired()
        if (principal.mfaPending && mode !== 'mfa-enrolment') throw mfaEnrollmentRequired()
        return { principal }
      },
    }),
    permission: (permission: Permission) => ({
      detail: { security: [{ bearer: [] }], description: `Requires the permission \`${permission}\`.`, 'x-permission': permission },
      resolve: async ({ request }) => {
        const principal = await resolvePrincipal(request)
        if (principal.mfaPending) throw mfaEnrollmentRequired()
        if (!holds(principal, permission)) {
          noteDenial(request, 'missing_permission', permission)
          throw forbidden(`This needs the ${permission} permission.`)
        }
        return { principal }
      },
    }),
  })
}

export type AuthMacros = ReturnType<typeof authMacros>
