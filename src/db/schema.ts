/**
 * The database schema. Times are integer milliseconds since the epoch (from the injected clock);
 * ids are UUIDv7 strings; secrets are stored only as keyed hashes or AES-GCM ciphertext.
 * Migrations in drizzle/ are generated from this file by `bun run db:generate`.
 */
import { sql } from 'drizzle-orm'
import { blob, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core'

const ts = (name: string) => integer(name, { mode: 'number' })

export const users = sqliteTable(
  'users',
  {
    id: text('id').primaryKey(),
    email: text('email').notNull(),
    name: text('name'),
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

export const roles = sqliteTable(
  'roles',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    level: integer('level').notNull(),
    description: text('description').notNull().default(''),
    builtin: integer('builtin', { mode: 'boolean' }).notNull().default(false),
    mfaRequired: integer('mfa_required', { mode: 'boolean' }).notNull().default(false),
    createdAt: ts('created_at').notNull(),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [uniqueIndex('roles_name_unique').on(t.name)],
)

/** Permission patterns granted by a role (`users:read`, `users:*`, `files:read:own`). The registry of real permissions lives in code. */
export const rolePermissions = sqliteTable(
  'role_permissions',
  {
    roleId: text('role_id')
      .notNull()
      .references(() => roles.id, { onDelete: 'cascade' }),
    permission: text('permission').notNull(),
  },
  (t) => [primaryKey({ columns: [t.roleId, t.permission] })],
)

export const userRoles = sqliteTable(
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

/** One session per sign-in; its refresh tokens form the rotation family that reuse detection revokes. */
export const sessions = sqliteTable(
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
    /** How the user proved themselves (`pwd`, `otp`, `webauthn`, `recovery`), comma-separated. */
    amr: text('amr').notNull().default('pwd'),
    /** Last time a password or second factor was proven in this session (step-up). */
    authTime: ts('auth_time').notNull(),
    /** Session limited to MFA enrolment until the user enrols (role requires MFA). */
    mfaPending: integer('mfa_pending', { mode: 'boolean' }).notNull().default(false),
    revokedAt: ts('revoked_at'),
    revokedReason: text('revoked_reason'),
  },
  // The *_revoked/_expires/_last_seen indexes let the retention pruner find ended sessions without a scan.
  (t) => [
    index('sessions_user').on(t.userId, t.createdAt),
    index('sessions_revoked').on(t.revokedAt),
    index('sessions_expires').on(t.expiresAt),
    index('sessions_last_seen').on(t.lastSeenAt),
  ],
)

export const refreshTokens = sqliteTable(
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
    /** The successor token, AES-GCM encrypted, so a concurrent retry within the grace gets the same one. */
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

/** Single-use mailed tokens: email verification, password reset, unlock. Stored as keyed hashes. */
export const emailTokens = sqliteTable(
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

export const passwordHistory = sqliteTable(
  'password_history',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    passwordHash: text('password_hash').notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('password_history_user').on(t.userId, t.id)],
)

/** JWT signing keys. The private JWK is AES-GCM encrypted with a key derived from BULWARK_SECRET. */
export const signingKeys = sqliteTable(
  'signing_keys',
  {
    kid: text('kid').primaryKey(),
    alg: text('alg').notNull(),
    publicJwk: text('public_jwk').notNull(),
    privateJwkEnc: text('private_jwk_enc').notNull(),
    createdAt: ts('created_at').notNull(),
    /** Set when a newer key became current; the key still verifies until `expiresAt`. */
    rotatedAt: ts('rotated_at'),
    /** After this the key is dropped from the JWKS and tokens it signed are refused. */
    expiresAt: ts('expires_at'),
  },
  (t) => [index('signing_keys_created').on(t.createdAt)],
)

/**
 * Derived keys kept across master-secret rotations (`bulwark secret rotate`): the token-hashing, CSRF and
 * cursor keys of the first secret, AES-GCM encrypted under the current one. Empty until the first rotation.
 */
export const secretKeys = sqliteTable('secret_keys', {
  purpose: text('purpose').primaryKey(),
  keyEnc: text('key_enc').notNull(),
  createdAt: ts('created_at').notNull(),
})

/** Security events: the audit trail. `id` is an increasing integer so pagination is stable. */
export const securityEvents = sqliteTable(
  'security_events',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    type: text('type').notNull(),
    outcome: text('outcome', { enum: ['success', 'failure', 'info'] }).notNull(),
    actorId: text('actor_id'),
    targetId: text('target_id'),
    ip: text('ip'),
    userAgent: text('user_agent'),
    requestId: text('request_id'),
    details: text('details', { mode: 'json' }).$type<Record<string, unknown>>(),
    createdAt: ts('created_at').notNull(),
    // Tamper evidence (src/modules/audit/chain.ts): one hash chain per process start; null on rows
    // written before the chain existed.
    chainId: text('chain_id'),
    seq: integer('seq'),
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

/** Mail waiting to be sent (or, without SMTP, kept for development and tests to read). */
export const mailOutbox = sqliteTable(
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

/** Failed sign-in counters and locks, per account; survives restarts. `kind` separates password and MFA steps. */
export const lockouts = sqliteTable(
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
    permanent: integer('permanent', { mode: 'boolean' }).notNull().default(false),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.kind] })],
)

export const totpFactors = sqliteTable('totp_factors', {
  userId: text('user_id')
    .primaryKey()
    .references(() => users.id, { onDelete: 'cascade' }),
  secretEnc: text('secret_enc').notNull(),
  algorithm: text('algorithm').notNull(),
  digits: integer('digits').notNull(),
  period: integer('period').notNull(),
  status: text('status', { enum: ['pending', 'active'] }).notNull(),
  /** Highest time step accepted so far: replay protection. */
  lastStep: integer('last_step'),
  createdAt: ts('created_at').notNull(),
  confirmedAt: ts('confirmed_at'),
})

export const recoveryCodes = sqliteTable(
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

export const passkeys = sqliteTable(
  'passkeys',
  {
    id: text('id').primaryKey(),
    /** Credential id, base64url. */
    credentialId: text('credential_id').notNull(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    publicKey: blob('public_key', { mode: 'buffer' }).notNull(),
    counter: integer('counter').notNull(),
    transports: text('transports', { mode: 'json' }).$type<string[]>(),
    deviceType: text('device_type'),
    backedUp: integer('backed_up', { mode: 'boolean' }).notNull().default(false),
    createdAt: ts('created_at').notNull(),
    lastUsedAt: ts('last_used_at'),
  },
  (t) => [uniqueIndex('passkeys_credential').on(t.credentialId), index('passkeys_user').on(t.userId)],
)

/** Single-use challenges: WebAuthn ceremonies and the mfaToken of a login waiting for its second factor. */
export const challenges = sqliteTable(
  'challenges',
  {
    id: text('id').primaryKey(),
    kind: text('kind', { enum: ['webauthn_register', 'webauthn_login', 'mfa_login'] }).notNull(),
    userId: text('user_id').references(() => users.id, { onDelete: 'cascade' }),
    /** Hash of the bearer value (mfaToken) or the WebAuthn challenge itself. */
    secretHash: text('secret_hash').notNull(),
    data: text('data', { mode: 'json' }).$type<Record<string, unknown>>(),
    attempts: integer('attempts').notNull().default(0),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    usedAt: ts('used_at'),
  },
  (t) => [uniqueIndex('challenges_secret').on(t.secretHash), index('challenges_expiry').on(t.expiresAt)],
)

export const files = sqliteTable(
  'files',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    type: text('type').notNull(),
    size: integer('size').notNull(),
    sha256: text('sha256').notNull(),
    purpose: text('purpose', { enum: ['file', 'avatar'] }).notNull().default('file'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('files_owner').on(t.ownerId, t.id)],
)

/** One row the readiness check rewrites (throttled): proves the database still takes a committed write. */
export const storageHeartbeat = sqliteTable('storage_heartbeat', {
  id: integer('id').primaryKey(),
  at: ts('at').notNull(),
})

/**
 * Webhook endpoints (src/modules/webhooks). The signing secret is AES-GCM encrypted under the derived
 * encryption key (AAD `whsec:<id>` / `whsec-prev:<id>`); during a rotation overlap the previous one signs too.
 * `source` is `api` for endpoints created over the API, `config` for the one BULWARK_ALERT_WEBHOOK_URL keeps.
 */
export const webhookEndpoints = sqliteTable('webhook_endpoints', {
  id: text('id').primaryKey(),
  url: text('url').notNull(),
  description: text('description').notNull().default(''),
  /** JSON array of event types (`*` = all). */
  events: text('events').notNull(),
  source: text('source', { enum: ['api', 'config'] }).notNull().default('api'),
  enabled: integer('enabled', { mode: 'boolean' }).notNull().default(true),
  disabledReason: text('disabled_reason'),
  secretEnc: text('secret_enc').notNull(),
  previousSecretEnc: text('previous_secret_enc'),
  previousSecretExpiresAt: ts('previous_secret_expires_at'),
  /** Failed attempts in a row, and when the current streak began (null: the last attempt succeeded). */
  consecutiveFailures: integer('consecutive_failures').notNull().default(0),
  failingSince: ts('failing_since'),
  createdAt: ts('created_at').notNull(),
  updatedAt: ts('updated_at').notNull(),
})

/**
 * The webhook outbox: one row per (event, endpoint). `id` is the Standard Webhooks `webhook-id`, the same on
 * every attempt. `next_attempt_at` doubles as the lease: a worker claims a due row by moving it past the lease
 * with a compare-and-set, so two instances never send the same attempt.
 */
export const webhookDeliveries = sqliteTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey(),
    endpointId: text('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    eventType: text('event_type').notNull(),
    /** The exact JSON body sent on every attempt. */
    payload: text('payload').notNull(),
    status: text('status', { enum: ['pending', 'succeeded', 'failed'] }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: ts('next_attempt_at'),
    lastAttemptAt: ts('last_attempt_at'),
    lastStatus: integer('last_status'),
    lastError: text('last_error'),
    /** JSON array of the last attempts `{at, status, error, durationMs}` (bounded). */
    history: text('history').notNull().default('[]'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('webhook_deliveries_due').on(t.status, t.nextAttemptAt), index('webhook_deliveries_endpoint').on(t.endpointId, t.id)],
)

/** OAuth 2.0 clients (service identities). Secrets are stored only as keyed hashes; the previous one works until `previous_secret_expires_at`. */
export const oauthClients = sqliteTable(
  'oauth_clients',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    authMethod: text('auth_method', { enum: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] }).notNull(),
    secretHash: text('secret_hash'),
    previousSecretHash: text('previous_secret_hash'),
    previousSecretExpiresAt: ts('previous_secret_expires_at'),
    /** Public JWKS (JSON) for private_key_jwt. */
    jwks: text('jwks'),
    /** Direct permission patterns (JSON array). */
    permissions: text('permissions').notNull().default('[]'),
    status: text('status', { enum: ['active', 'disabled'] }).notNull().default('active'),
    createdBy: text('created_by'),
    createdAt: ts('created_at').notNull(),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [index('oauth_clients_created').on(t.createdAt, t.id)],
)

/** Roles granted to OAuth clients. */
export const clientRoles = sqliteTable(
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

/** `jti`s of accepted private_key_jwt assertions, kept until they expire (replay refusal, RFC 7523 §3 item 7). */
export const clientAssertionJtis = sqliteTable(
  'client_assertion_jtis',
  {
    clientId: text('client_id').notNull(),
    jti: text('jti').notNull(),
    expiresAt: ts('expires_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.clientId, t.jti] }), index('client_assertion_jtis_expires').on(t.expiresAt)],
)

/** Permissions registered by applications (`orders:read`); the built-in registry lives in code (src/lib/permissions.ts). */
export const appPermissions = sqliteTable('app_permissions', {
  name: text('name').primaryKey(),
  description: text('description').notNull().default(''),
  createdBy: text('created_by'),
  createdAt: ts('created_at').notNull(),
})

/** Personal API keys (`bwk_…`), stored only as keyed hashes; `permissions` (JSON patterns, null: the owner's) bound them further. */
export const apiKeys = sqliteTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    keyHash: text('key_hash').notNull(),
    /** The first characters of the key (`bwk_AbCdEf`), to recognise it in a list; not enough to use it. */
    hint: text('hint').notNull(),
    permissions: text('permissions'),
    /** How the creating session was authenticated (`pwd`, `pwd,otp`): the key counts as that for MFA-requiring roles. */
    amr: text('amr').notNull().default('pwd'),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at'),
    lastUsedAt: ts('last_used_at'),
    revokedAt: ts('revoked_at'),
  },
  (t) => [uniqueIndex('api_keys_hash').on(t.keyHash), index('api_keys_user').on(t.userId, t.id)],
)
