/**
 * The tables services query, for the engine chosen once at start (ARCHITECTURE.md: "SQLite or PostgreSQL,
 * chosen once at start"). Services import tables from here, never from a dialect's schema file: `useEngine` (called
 * by the composition root before anything queries) rebinds these live ES module bindings to the PostgreSQL
 * tables, which have the same names, columns and value types (src/db/pg/schema.ts; test/db/pg-schema.test.ts).
 * Types are the SQLite schema's: the two agree column for column, so one set of types serves both.
 */
import * as lite from './schema'
import * as pg from './pg/schema'
import { pgDialect, sqliteDialect, type Dialect } from './dialect'

export type Engine = 'sqlite' | 'postgres'

export let users = lite.users
export let roles = lite.roles
export let rolePermissions = lite.rolePermissions
export let userRoles = lite.userRoles
export let sessions = lite.sessions
export let refreshTokens = lite.refreshTokens
export let emailTokens = lite.emailTokens
export let passwordHistory = lite.passwordHistory
export let signingKeys = lite.signingKeys
export let secretKeys = lite.secretKeys
export let securityEvents = lite.securityEvents
export let mailOutbox = lite.mailOutbox
export let lockouts = lite.lockouts
export let totpFactors = lite.totpFactors
export let recoveryCodes = lite.recoveryCodes
export let passkeys = lite.passkeys
export let challenges = lite.challenges
export let files = lite.files
export let storageHeartbeat = lite.storageHeartbeat
export let webhookEndpoints = lite.webhookEndpoints
export let webhookDeliveries = lite.webhookDeliveries
export let oauthClients = lite.oauthClients
export let clientRoles = lite.clientRoles
export let clientAssertionJtis = lite.clientAssertionJtis
export let appPermissions = lite.appPermissions
export let apiKeys = lite.apiKeys

/** The engine's differences (affected rows, constraint errors, SQL fragments). */
export let dialect: Dialect = sqliteDialect

let chosen: Engine | undefined

/** The engine in use ('sqlite' until `useEngine('postgres')`). */
export const engine = (): Engine => chosen ?? 'sqlite'

/**
 * Selects the engine for this process. Chosen once: switching later would hand one engine's tables to the other's
 * connection, so a second, different choice throws.
 */
export function useEngine(e: Engine): void {
  if (chosen === e) return
  if (chosen !== undefined) throw new Error(`the database engine is ${chosen} in this process; it cannot switch to ${e}`)
  chosen = e
  if (e === 'sqlite') return
  const t = pg as unknown as typeof lite
  users = t.users
  roles = t.roles
  rolePermissions = t.rolePermissions
  userRoles = t.userRoles
  sessions = t.sessions
  refreshTokens = t.refreshTokens
  emailTokens = t.emailTokens
  passwordHistory = t.passwordHistory
  signingKeys = t.signingKeys
  secretKeys = t.secretKeys
  securityEvents = t.securityEvents
  mailOutbox = t.mailOutbox
  lockouts = t.lockouts
  totpFactors = t.totpFactors
  recoveryCodes = t.recoveryCodes
  passkeys = t.passkeys
  challenges = t.challenges
  files = t.files
  storageHeartbeat = t.storageHeartbeat
  webhookEndpoints = t.webhookEndpoints
  webhookDeliveries = t.webhookDeliveries
  oauthClients = t.oauthClients
  clientRoles = t.clientRoles
  clientAssertionJtis = t.clientAssertionJtis
  appPermissions = t.appPermissions
  apiKeys = t.apiKeys
  dialect = pgDialect
}
