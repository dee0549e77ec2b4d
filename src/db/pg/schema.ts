/**
 * The PostgreSQL schema: the same tables, columns, nullability, defaults, primary keys, unique and plain
 * indexes and foreign keys as the SQLite schema (src/db/schema.ts), column for column, so rows move
 * between the two unchanged (`bulwark db copy`). test/db/pg-schema.test.ts compares both structurally.
 *
 * Type mapping: times stay integer milliseconds (`bigint`, `mode: 'number'`: the same values as SQLite);
 * SQLite `integer` booleans are `boolean`; JSON columns are `jsonb` (the services read them as parsed
 * values through drizzle in both dialects); the passkey public key is `bytea`; counters that can pass
 * 2^31 (WebAuthn sign counter, file size, TOTP step, chain position, autoincrement ids) are `bigint`.
 * Migrations in drizzle/pg/ are generated from this file by `bun run db:generate:pg`.
 */
import { sql } from 'drizzle-orm'
import { bigint, boolean, customType, index, integer, pgTable, primaryKey, text, uniqueIndex } from 'drizzle-orm/pg-core'

const ts = (name: string) => bigint(name, { mode: 'number' })
const big = (name: string) => bigint(name, { mode: 'number' })
/** `bytea` read and written as a Node Buffer, as bun:sqlite's `blob({ mode: 'buffer' })` does. */
const bytea = customType<{ data: Buffer; driverData: Uint8Array | Buffer }>({
  dataType: () => 'bytea',
  toDriver: (v) => v,
  fromDriver: (v) => (Buffer.isBuffer(v) ? v : Buffer.from(v)),
})

/**
 * `jsonb` handed to Bun's SQL client as the value itself. drizzle's own `jsonb` JSON.stringifies the value
 * first, and Bun's client then sends that string as a JSON string: every object was stored as a jsonb
 * *string* (`jsonb_typeof = 'string'`), readable back through drizzle but not as JSON in SQL, and not
 * the `details` an audit-chain walk re-hashes. Bun serialises an object or array parameter as JSON.
 * Migration 0004 repairs rows written before (test/db/pg-jsonb.test.ts).
 */
const jsonb = <T>(name: string) =>
  customType<{ data: T; driverData: unknown }>({
    dataType: () => 'jsonb',
    toDriver: (v) => v as unknown,
    fromDriver: (v) => v as T,
  })(name)

/**
 * `text COLLATE "C"`: compared byte by byte, as SQLite's BINARY compares. The user list's prefix search reads
 * `[q, q + U+10FFFF)` ranges of the email and lower(name) indexes, which are exactly the strings starting with q
 * only in a binary order; under a database's linguistic collation (glibc en_US, ICU with punctuation ignored)
 * 'a-bc' sorts inside 'ab…' and was listed for q=ab. lower() under "C" folds ASCII only, as SQLite's does.
 */
const binaryText = customType<{ data: string; driverData: string }>({ dataType: () => 'text COLLATE "C"' })

export const users = pgTable(
  'users',
  {
    id: text('id').primaryKey(),
    email: binaryText('email').notNull(),
    name: binaryText('name'),
    passwordHash: text('password_hash'),
    status: text('status', { enum: ['active', 'disabled'] }).notNull().default('active'),
    emailVerifiedAt: ts('email_verified_at'),
    passwordChangedAt: ts('password_changed_at'),
    createdAt: ts('created_at').notNull(),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [
    uniqueIndex('users_email_unique').on(t.email),
    index('users_status_id').on(t.status, t.id),
    index('users_name_lower').on(sql`lower(${t.name})`),
  ],
)

export const roles = pgTable(
  'roles',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    level: integer('level').notNull(),
    description: text('description').notNull().default(''),
    builtin: boolean('builtin').notNull().default(false),
    mfaRequired: boolean('mfa_required').notNull().default(false),
    createdAt: ts('created_at').notNull(),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [uniqueIndex('roles_name_unique').on(t.name)],
)

export const rolePermissions = pgTable(
  'role_permissions',
  {
    roleId: text('role_id')
      .notNull()
      .references(() => roles.id, { onDelete: 'cascade' }),
    permission: text('permission').notNull(),
  },
  (t) => [primaryKey({ columns: [t.roleId, t.permission] })],
)

export const userRoles = pgTable(
  'user_roles',
  {
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    roleId: text('role_id')
      .notNull()
      .references(() => roles.id, { onDelete: 'restrict' }),
    grantedBy: text('granted_by'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.roleId] }), index('user_roles_role').on(t.roleId, t.userId)],
)

export const sessions = pgTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    createdAt: ts('created_at').notNull(),
    lastSeenAt: ts('last_seen_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    ip: text('ip'),
    userAgent: text('user_agent'),
    transport: text('transport', { enum: ['bearer', 'cookie'] }).notNull().default('bearer'),
    amr: text('amr').notNull().default('pwd'),
    authTime: ts('auth_time').notNull(),
    mfaPending: boolean('mfa_pending').notNull().default(false),
    revokedAt: ts('revoked_at'),
    revokedReason: text('revoked_reason'),
  },
  (t) => [
    index('sessions_user').on(t.userId, t.createdAt),
    index('sessions_revoked').on(t.revokedAt),
    index('sessions_expires').on(t.expiresAt),
    index('sessions_last_seen').on(t.lastSeenAt),
  ],
)

export const refreshTokens = pgTable(
  'refresh_tokens',
  {
    id: text('id').primaryKey(),
    sessionId: text('session_id')
      .notNull()
      .references(() => sessions.id, { onDelete: 'cascade' }),
    tokenHash: text('token_hash').notNull(),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    usedAt: ts('used_at'),
    replacedBy: text('replaced_by'),
    successorEnc: text('successor_enc'),
  },
  (t) => [
    uniqueIndex('refresh_tokens_hash').on(t.tokenHash),
    index('refresh_tokens_session').on(t.sessionId),
    // Partial, so an unspent token is in neither and a spend appends at their tails (used_at is the time of
    // the spend): the pruner finds spent tokens, and spent tokens whose successor copy is still kept, by `used_at`.
    index('refresh_tokens_used').on(t.usedAt).where(sql`${t.usedAt} IS NOT NULL`),
    index('refresh_tokens_successor_kept').on(t.usedAt).where(sql`${t.successorEnc} IS NOT NULL`),
  ],
)

export const emailTokens = pgTable(
  'email_tokens',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    purpose: text('purpose', { enum: ['verify_email', 'password_reset', 'unlock'] }).notNull(),
    tokenHash: text('token_hash').notNull(),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    usedAt: ts('used_at'),
  },
  (t) => [uniqueIndex('email_tokens_hash').on(t.tokenHash), index('email_tokens_user').on(t.userId, t.purpose), index('email_tokens_expires').on(t.expiresAt)],
)

export const passwordHistory = pgTable(
  'password_history',
  {
    id: big('id').primaryKey().generatedByDefaultAsIdentity(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    passwordHash: text('password_hash').notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('password_history_user').on(t.userId, t.id)],
)

export const signingKeys = pgTable(
  'signing_keys',
  {
    kid: text('kid').primaryKey(),
    alg: text('alg').notNull(),
    publicJwk: text('public_jwk').notNull(),
    privateJwkEnc: text('private_jwk_enc').notNull(),
    createdAt: ts('created_at').notNull(),
    rotatedAt: ts('rotated_at'),
    expiresAt: ts('expires_at'),
  },
  (t) => [index('signing_keys_created').on(t.createdAt)],
)

export const secretKeys = pgTable('secret_keys', {
  purpose: text('purpose').primaryKey(),
  keyEnc: text('key_enc').notNull(),
  createdAt: ts('created_at').notNull(),
})

export const securityEvents = pgTable(
  'security_events',
  {
    id: big('id').primaryKey().generatedByDefaultAsIdentity(),
    type: text('type').notNull(),
    outcome: text('outcome', { enum: ['success', 'failure', 'info'] }).notNull(),
    actorId: text('actor_id'),
    targetId: text('target_id'),
    ip: text('ip'),
    userAgent: text('user_agent'),
    requestId: text('request_id'),
    details: jsonb<Record<string, unknown>>('details'),
    createdAt: ts('created_at').notNull(),
    chainId: text('chain_id'),
    seq: big('seq'),
    prevHash: text('prev_hash'),
    hash: text('hash'),
  },
  (t) => [
    index('security_events_type').on(t.type, t.id),
    // Partial: an event about its own actor (sign-in, refresh, logout: most events) is found through the
    // actor index alone, so it writes one random-position index entry instead of two; an event without
    // an actor writes none there. The user filter of the list reads both (src/modules/audit/service.ts).
    index('security_events_actor').on(t.actorId, t.id).where(sql`${t.actorId} IS NOT NULL`),
    index('security_events_target').on(t.targetId, t.id).where(sql`${t.targetId} IS NOT NULL AND (${t.actorId} IS NULL OR ${t.targetId} <> ${t.actorId})`),
    index('security_events_created').on(t.createdAt),
    uniqueIndex('security_events_chain').on(t.chainId, t.seq),
    index('security_events_type_created').on(t.type, t.createdAt),
  ],
)

export const mailOutbox = pgTable(
  'mail_outbox',
  {
    id: text('id').primaryKey(),
    to: text('to').notNull(),
    subject: text('subject').notNull(),
    text: text('text').notNull(),
    status: text('status', { enum: ['pending', 'sent', 'failed', 'kept'] }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: ts('next_attempt_at').notNull(),
    lastError: text('last_error'),
    createdAt: ts('created_at').notNull(),
    sentAt: ts('sent_at'),
  },
  (t) => [index('mail_outbox_due').on(t.status, t.nextAttemptAt), index('mail_outbox_done').on(t.status, t.createdAt)],
)

export const lockouts = pgTable(
  'lockouts',
  {
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: ['password', 'mfa'] }).notNull(),
    failures: integer('failures').notNull().default(0),
    windowStartedAt: ts('window_started_at').notNull(),
    lockedUntil: ts('locked_until'),
    lockCount: integer('lock_count').notNull().default(0),
    permanent: boolean('permanent').notNull().default(false),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.kind] })],
)

export const totpFactors = pgTable('totp_factors', {
  userId: text('user_id')
    .primaryKey()
    .references(() => users.id, { onDelete: 'cascade' }),
  secretEnc: text('secret_enc').notNull(),
  algorithm: text('algorithm').notNull(),
  digits: integer('digits').notNull(),
  period: integer('period').notNull(),
  status: text('status', { enum: ['pending', 'active'] }).notNull(),
  lastStep: big('last_step'),
  createdAt: ts('created_at').notNull(),
  confirmedAt: ts('confirmed_at'),
})

export const recoveryCodes = pgTable(
  'recovery_codes',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    codeHash: text('code_hash').notNull(),
    createdAt: ts('created_at').notNull(),
    usedAt: ts('used_at'),
  },
  (t) => [index('recovery_codes_user').on(t.userId), uniqueIndex('recovery_codes_hash').on(t.codeHash)],
)

export const passkeys = pgTable(
  'passkeys',
  {
    id: text('id').primaryKey(),
    credentialId: text('credential_id').notNull(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    publicKey: bytea('public_key').notNull(),
    counter: big('counter').notNull(),
    transports: jsonb<string[]>('transports'),
    deviceType: text('device_type'),
    backedUp: boolean('backed_up').notNull().default(false),
    createdAt: ts('created_at').notNull(),
    lastUsedAt: ts('last_used_at'),
  },
  (t) => [uniqueIndex('passkeys_credential').on(t.credentialId), index('passkeys_user').on(t.userId)],
)

export const challenges = pgTable(
  'challenges',
  {
    id: text('id').primaryKey(),
    kind: text('kind', { enum: ['webauthn_register', 'webauthn_login', 'mfa_login'] }).notNull(),
    userId: text('user_id').references(() => users.id, { onDelete: 'cascade' }),
    secretHash: text('secret_hash').notNull(),
    data: jsonb<Record<string, unknown>>('data'),
    attempts: integer('attempts').notNull().default(0),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    usedAt: ts('used_at'),
  },
  (t) => [uniqueIndex('challenges_secret').on(t.secretHash), index('challenges_expiry').on(t.expiresAt)],
)

export const files = pgTable(
  'files',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    type: text('type').notNull(),
    size: big('size').notNull(),
    sha256: text('sha256').notNull(),
    purpose: text('purpose', { enum: ['file', 'avatar'] }).notNull().default('file'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('files_owner').on(t.ownerId, t.id)],
)

export const storageHeartbeat = pgTable('storage_heartbeat', {
  id: integer('id').primaryKey(),
  at: ts('at').notNull(),
})

/** Webhook endpoints; `events` is JSON text, as in the SQLite schema (read and written as a string there too). */
export const webhookEndpoints = pgTable('webhook_endpoints', {
  id: text('id').primaryKey(),
  url: text('url').notNull(),
  description: text('description').notNull().default(''),
  events: text('events').notNull(),
  source: text('source', { enum: ['api', 'config'] }).notNull().default('api'),
  enabled: boolean('enabled').notNull().default(true),
  disabledReason: text('disabled_reason'),
  secretEnc: text('secret_enc').notNull(),
  previousSecretEnc: text('previous_secret_enc'),
  previousSecretExpiresAt: ts('previous_secret_expires_at'),
  consecutiveFailures: integer('consecutive_failures').notNull().default(0),
  failingSince: ts('failing_since'),
  createdAt: ts('created_at').notNull(),
  updatedAt: ts('updated_at').notNull(),
})

/** The webhook outbox; `payload` is the exact body sent and `history` JSON text, as in the SQLite schema. */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey(),
    endpointId: text('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    eventType: text('event_type').notNull(),
    payload: text('payload').notNull(),
    status: text('status', { enum: ['pending', 'succeeded', 'failed'] }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: ts('next_attempt_at'),
    lastAttemptAt: ts('last_attempt_at'),
    lastStatus: integer('last_status'),
    lastError: text('last_error'),
    history: text('history').notNull().default('[]'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('webhook_deliveries_due').on(t.status, t.nextAttemptAt), index('webhook_deliveries_endpoint').on(t.endpointId, t.id)],
)

/** OAuth 2.0 clients (service identities); mirrors `oauth_clients` of the SQLite schema. */
export const oauthClients = pgTable(
  'oauth_clients',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    authMethod: text('auth_method', { enum: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] }).notNull(),
    secretHash: text('secret_hash'),
    previousSecretHash: text('previous_secret_hash'),
    previousSecretExpiresAt: ts('previous_secret_expires_at'),
    jwks: text('jwks'),
    permissions: text('permissions').notNull().default('[]'),
    status: text('status', { enum: ['active', 'disabled'] }).notNull().default('active'),
    createdBy: text('created_by'),
    createdAt: ts('created_at').notNull(),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [index('oauth_clients_created').on(t.createdAt, t.id)],
)

export const clientRoles = pgTable(
  'client_roles',
  {
    clientId: text('client_id')
      .notNull()
      .references(() => oauthClients.id, { onDelete: 'cascade' }),
    roleId: text('role_id')
      .notNull()
      .references(() => roles.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.clientId, t.roleId] }), index('client_roles_role').on(t.roleId)],
)

export const clientAssertionJtis = pgTable(
  'client_assertion_jtis',
  {
    clientId: text('client_id').notNull(),
    jti: text('jti').notNull(),
    expiresAt: ts('expires_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.clientId, t.jti] }), index('client_assertion_jtis_expires').on(t.expiresAt)],
)

export const appPermissions = pgTable('app_permissions', {
  name: text('name').primaryKey(),
  description: text('description').notNull().default(''),
  createdBy: text('created_by'),
  createdAt: ts('created_at').notNull(),
})

export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    keyHash: text('key_hash').notNull(),
    hint: text('hint').notNull(),
    permissions: text('permissions'),
    amr: text('amr').notNull().default('pwd'),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at'),
    lastUsedAt: ts('last_used_at'),
    revokedAt: ts('revoked_at'),
  },
  (t) => [uniqueIndex('api_keys_hash').on(t.keyHash), index('api_keys_user').on(t.userId, t.id)],
)
