/**
 * The contract between the authentication plugin and the controllers: the `principal` shape and the two
 * route macros, `{ auth: true }` (any signed-in caller) and `{ permission: 'users:read' }` (a registered
 * permission, else 403). `authMacros(resolve)` builds a plugin providing both from one function that turns
 * a request into a principal (or throws 401); the real auth plugin (JWT + session checks) and the test
 * stand-in differ only in that function. Controllers take the plugin as a parameter and are typed against
 * `AuthMacros`, so either can be passed.
 */
import { Elysia } from 'elysia'
import { forbidden } from '../lib/errors'
import { holds, type Permission } from '../lib/permissions'

export interface Principal {
  userId: string
  sessionId: string
  level: number
  /** Effective registered permissions (patterns expanded). */
  permissions: string[]
  roles: string[]
  amr: string[]
  authTime: number
  mfaPending: boolean
}

/** Turns a request into its principal; throws AppError 401 when the caller is not signed in. */
export type PrincipalResolver = (request: Request) => Principal | Promise<Principal>

/** Builds the macro plugin from a principal resolver. Hooks are arrow functions (method shorthand breaks when minified). */
export function authMacros(resolvePrincipal: PrincipalResolver, name = 'auth-macros') {
  return new Elysia({ name }).macro({
    auth: {
      resolve: async ({ request }) => ({ principal: await resolvePrincipal(request) }),
    },
    permission: (permission: Permission) => ({
      resolve: async ({ request }) => {
        const principal = await resolvePrincipal(request)
        if (!holds(principal, permission)) throw forbidden(`This needs the ${permission} permission.`)
        return { principal }
      },
    }),
  })
}

export type AuthMacros = ReturnType<typeof authMacros>
