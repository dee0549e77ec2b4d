/**
 * Configuration: the environment turned into one typed, validated object.
 *
 * Every setting is declared once in SETTINGS (name, kind, default, bounds, description); the README table
 * and `bulwark config check` are produced from the same list. Each `BULWARK_X` may instead be given as
 * `BULWARK_X_FILE`, a path whose contents (trailing newline trimmed) are the value, for Docker/K8s secrets.
 * Production refuses unsafe settings with one line per problem (see `productionProblems`).
 */
import { readFileSync } from 'node:fs'
import { Type as T, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { closestName } from './lib/closest-name'
import { invalidCidrs } from './lib/ip'
import { profileRouteLimits, ROUTE_POLICY_NAMES } from './lib/rate-limit-policies'

type Kind = 'string' | 'int' | 'bool' | 'duration' | 'list' | 'enum' | 'url' | 'bytes'

interface Setting {
  env: string
  kind: Kind
  default?: string
  secret?: boolean
  min?: number
  max?: number
  values?: readonly string[]
  /** Defaults that differ by BULWARK_ENV (see the README's "Profiles"); `default` applies otherwise. */
  profiles?: Partial<Record<'development' | 'test' | 'production', string>>
  /** A URL shown by `config check` with its password masked (not a secret as a whole). */
  maskPassword?: boolean
  doc: string
}

const MIN = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000

/** Every setting Bulwark reads. Durations accept `500ms`, `30s`, `15m`, `24h`, `7d` or plain seconds. */
export const SETTINGS = [
  { env: 'BULWARK_ENV', kind: 'enum', values: ['development', 'test', 'production'], default: 'development', doc: 'development, test or production; production refuses unsafe settings' },
  { env: 'BULWARK_HOST', kind: 'string', default: '127.0.0.1', doc: 'address to listen on' },
  { env: 'BULWARK_PORT', kind: 'int', default: '3000', min: 0, max: 65535, doc: 'port to listen on (0 picks a free one)' },
  { env: 'BULWARK_SECRET', kind: 'string', secret: true, doc: 'master secret (>= 32 bytes); HKDF derives token-hashing, CSRF and encryption keys from it. Generated into the data folder outside production' },
  { env: 'BULWARK_ALLOW_HTTP', kind: 'bool', default: '0', doc: '1 lets production run behind plain HTTP (no Secure cookies, no HSTS)' },
  { env: 'BULWARK_DATA_DIR', kind: 'string', default: './data', doc: 'SQLite database, development secret, uploaded files, mail.ndjson' },
  { env: 'BULWARK_DB_PATH', kind: 'string', doc: 'SQLite file (default <data dir>/bulwark.sqlite; `:memory:` for throwaway runs)' },
  { env: 'BULWARK_PUBLIC_URL', kind: 'url', doc: 'issuer (iss) and WebAuthn origin; unset: follows the listening port, `http://localhost:<port>` on a loopback or wildcard address, else `http://<host>:<port>`' },
  { env: 'BULWARK_WEBAUTHN_RP_ID', kind: 'string', doc: 'WebAuthn relying party id (default: host of the public URL)' },
  { env: 'BULWARK_WEBAUTHN_ORIGINS', kind: 'list', doc: 'comma-separated origins allowed for WebAuthn (default: the public URL origin)' },
  { env: 'BULWARK_CORS_ORIGINS', kind: 'list', default: '', doc: 'comma-separated exact origins allowed by CORS; `*` refused in production' },
  { env: 'BULWARK_TRUST_PROXY', kind: 'list', default: '', doc: 'proxy addresses or CIDRs whose X-Forwarded-For is believed' },
  { env: 'BULWARK_REDIS_URL', kind: 'url', secret: true, doc: 'Redis for shared cache, rate-limit counters and invalidation across instances' },
  { env: 'BULWARK_CLAMD', kind: 'string', doc: 'clamd `host:port` or unix socket path for upload scanning' },
  { env: 'BULWARK_CLAMD_CONNECT_TIMEOUT', kind: 'duration', default: '1s', min: 50, max: 30_000, doc: 'how long clamd may take to connect and answer PING before a scan; a timeout opens the scanner breaker at once' },
  { env: 'BULWARK_CLAMD_TIMEOUT', kind: 'duration', default: '10s', min: 1000, max: 300_000, doc: 'how long one clamd scan may take' },
  { env: 'BULWARK_UPLOADS', kind: 'bool', default: '1', doc: 'enables /v1/files and avatars' },
  { env: 'BULWARK_UPLOADS_SCAN', kind: 'enum', values: ['on', 'off'], default: 'on', doc: '`off` explicitly accepts uploads without a virus scan in production' },
  { env: 'BULWARK_UPLOAD_MAX_BYTES', kind: 'bytes', default: '10485760', min: 1024, max: 1073741824, doc: 'largest accepted upload' },
  { env: 'BULWARK_METRICS_TOKEN', kind: 'string', secret: true, doc: 'bearer token that /metrics requires' },
  { env: 'BULWARK_MANAGEMENT_PORT', kind: 'int', min: 0, max: 65535, doc: 'port of a separate management listener for /metrics and /health/*; when set, /metrics leaves the main listener' },
  { env: 'BULWARK_MANAGEMENT_HOST', kind: 'string', default: '127.0.0.1', doc: 'address of the management listener (loopback by default)' },
  { env: 'BULWARK_METRICS_PUBLIC', kind: 'bool', default: '0', doc: '1 lets production serve /metrics on the main listener without a token' },
  { env: 'BULWARK_ADMIN_EMAIL', kind: 'string', doc: 'creates the first owner on an empty database' },
  { env: 'BULWARK_ADMIN_PASSWORD', kind: 'string', secret: true, doc: 'password of that first owner' },
  { env: 'BULWARK_LOG_LEVEL', kind: 'enum', values: ['debug', 'info', 'warn', 'error', 'silent'], default: 'info', doc: 'log level' },
  { env: 'BULWARK_SMTP_URL', kind: 'url', secret: true, doc: 'smtp:// or smtps:// relay; without it mail goes to the outbox and <data dir>/mail.ndjson' },
  { env: 'BULWARK_MAIL_FROM', kind: 'string', default: 'Bulwark <no-reply@localhost>', doc: 'From address of outgoing mail' },
  { env: 'BULWARK_APP_URL', kind: 'url', doc: 'base URL of your application; mails link to `<app>/verify-email#token=…`, `<app>/reset-password#token=…`, `<app>/unlock#token=…`. Unset (and no template): mails carry the token and the API call, no link' },
  { env: 'BULWARK_MAIL_LINK_VERIFY', kind: 'string', doc: 'link template of the email-verification mail, `{token}` replaced, e.g. `https://app.example.com/verify?token={token}` (overrides BULWARK_APP_URL)' },
  { env: 'BULWARK_MAIL_LINK_RESET', kind: 'string', doc: 'link template of the password-reset mail, e.g. `https://app.example.com/reset?token={token}`' },
  { env: 'BULWARK_MAIL_LINK_UNLOCK', kind: 'string', doc: 'link template of the account-unlock mail, e.g. `https://app.example.com/unlock?token={token}`' },
  { env: 'BULWARK_ALERT_WEBHOOK_URL', kind: 'url', secret: true, doc: 'kept as a webhook endpoint subscribed to `security.alert` (high-severity security events), signed like every webhook' },
  { env: 'BULWARK_ALERT_WEBHOOK_SECRET', kind: 'string', secret: true, doc: 'the `whsec_…` secret that signs deliveries to BULWARK_ALERT_WEBHOOK_URL; unset: generated (rotate it over the API to read one)' },
  { env: 'BULWARK_WEBHOOK_ALLOW_PRIVATE', kind: 'bool', default: '0', doc: '`1` lets webhooks reach private, loopback, link-local, unique-local and CGNAT addresses (tests, internal receivers)' },
  { env: 'BULWARK_WEBHOOK_TIMEOUT', kind: 'duration', default: '10s', min: 100, max: 60_000, doc: 'longest time one webhook attempt may take (connect, send, read the answer)' },
  { env: 'BULWARK_WEBHOOK_RETRY_SCHEDULE', kind: 'list', default: '5s,5m,30m,2h,5h,10h,10h', doc: 'waits between webhook attempts (each with up to 10 % jitter); after the last one the delivery is `failed`' },
  { env: 'BULWARK_WEBHOOK_DISABLE_AFTER', kind: 'duration', default: '5d', min: 1000, max: 90 * DAY, doc: 'an endpoint whose attempts have all failed for this long is disabled (audited; PATCH `enabled: true` re-enables it)' },
  { env: 'BULWARK_WEBHOOK_DISABLE_FAILURES', kind: 'int', default: '100', min: 1, max: 100_000, doc: 'an endpoint is also disabled after this many failed attempts in a row' },
  { env: 'BULWARK_WEBHOOK_POLL_INTERVAL', kind: 'duration', default: '1s', min: 50, max: 300_000, doc: 'how often the webhook worker looks for due deliveries' },
  { env: 'BULWARK_BODY_LIMIT', kind: 'bytes', default: '1048576', min: 1024, max: 67108864, doc: 'largest accepted request body outside uploads' },
  { env: 'BULWARK_BODY_TIMEOUT', kind: 'duration', default: '10s', min: 100, max: 300_000, doc: 'longest time to receive a request body; slower bodies get 408 and the connection is closed' },
  { env: 'BULWARK_IDLE_TIMEOUT', kind: 'duration', default: '30s', min: 1000, max: 255_000, doc: 'socket idle timeout' },
  { env: 'BULWARK_SHUTDOWN_GRACE', kind: 'duration', default: '10s', min: 0, max: 120_000, doc: 'how long SIGTERM waits for in-flight requests' },
  // tokens and sessions
  { env: 'BULWARK_JWT_ALG', kind: 'enum', values: ['EdDSA', 'ES256'], default: 'EdDSA', doc: 'signing algorithm of access tokens' },
  { env: 'BULWARK_JWT_AUDIENCE', kind: 'string', default: 'bulwark', doc: 'aud claim of access tokens' },
  { env: 'BULWARK_TOKEN_CLAIMS', kind: 'list', default: '', doc: 'extra claims in user access tokens for resource servers that authorise locally: any of roles, permissions, scope (default none; see README "Applications and services")' },
  { env: 'BULWARK_TOKEN_CLAIMS_MAX', kind: 'int', default: '50', min: 1, max: 500, doc: 'a roles/permissions/scope claim with more entries than this is left out of the token (introspect instead)' },
  { env: 'BULWARK_ACCESS_TOKEN_TTL', kind: 'duration', default: '10m', min: 30_000, max: DAY, doc: 'access token lifetime' },
  { env: 'BULWARK_KEY_ROTATION_INTERVAL', kind: 'duration', default: '0', min: 0, max: 365 * DAY, doc: 'make a new signing key current once the current one is this old (at least 1h); 0 = only `bulwark keys rotate`' },
  { env: 'BULWARK_OLD_SECRET', kind: 'string', secret: true, doc: 'the previous master secret, read only by `bulwark secret rotate`' },
  { env: 'BULWARK_SESSION_IDLE_TTL', kind: 'duration', default: '7d', min: MIN, max: 365 * DAY, doc: 'session ends after this long unused' },
  { env: 'BULWARK_SESSION_ABSOLUTE_TTL', kind: 'duration', default: '30d', min: MIN, max: 365 * DAY, doc: 'session ends this long after sign-in, used or not' },
  { env: 'BULWARK_REFRESH_REUSE_GRACE', kind: 'duration', default: '5s', min: 0, max: MIN, doc: 'a just-spent refresh token presented again within this grace is a concurrent retry, not theft' },
  { env: 'BULWARK_EMAIL_VERIFY_TTL', kind: 'duration', default: '24h', min: MIN, max: 30 * DAY, doc: 'email verification token lifetime' },
  { env: 'BULWARK_PASSWORD_RESET_TTL', kind: 'duration', default: '30m', min: MIN, max: DAY, doc: 'password reset token lifetime' },
  { env: 'BULWARK_MFA_TOKEN_TTL', kind: 'duration', default: '5m', min: 30_000, max: HOUR, doc: 'lifetime of the mfaToken between password and second factor' },
  { env: 'BULWARK_STEP_UP_TTL', kind: 'duration', default: '5m', min: 30_000, max: HOUR, doc: 'how recent a proof must be for sensitive changes' },
  // passwords
  { env: 'BULWARK_ARGON2_MEMORY_KIB', kind: 'int', default: '19456', profiles: { test: '1024' }, min: 1024, max: 1048576, doc: 'argon2id memory cost (KiB)' },
  { env: 'BULWARK_ARGON2_TIME', kind: 'int', default: '2', profiles: { test: '1' }, min: 1, max: 20, doc: 'argon2id iterations' },
  { env: 'BULWARK_PASSWORD_MIN_LENGTH', kind: 'int', default: '12', min: 8, max: 128, doc: 'minimum password length (code points, after NFKC)' },
  { env: 'BULWARK_PASSWORD_MAX_LENGTH', kind: 'int', default: '128', min: 64, max: 1024, doc: 'maximum password length' },
  { env: 'BULWARK_PASSWORD_MIN_SCORE', kind: 'int', default: '3', min: 0, max: 4, doc: 'minimum zxcvbn score (0-4)' },
  { env: 'BULWARK_PASSWORD_SCORER', kind: 'enum', values: ['worker', 'inline'], default: 'worker', doc: 'where password strength (zxcvbn) is scored: `worker`, a thread started on demand that holds the dictionaries (about 60 MiB) only while in use; `inline`, on the server thread, dictionaries kept once loaded' },
  { env: 'BULWARK_PASSWORD_SCORER_IDLE', kind: 'duration', default: '30s', min: 100, max: HOUR, doc: 'how long the scorer worker lives without a password to score before it ends and frees its memory (the next score loads the dictionaries again, ~0.1-0.3 s off the server thread)' },
  { env: 'BULWARK_PASSWORD_HISTORY', kind: 'int', default: '5', min: 0, max: 50, doc: 'how many previous passwords may not be reused' },
  { env: 'BULWARK_HIBP', kind: 'enum', values: ['on', 'off'], default: 'off', doc: 'check passwords against the Have I Been Pwned range API (k-anonymity)' },
  { env: 'BULWARK_HIBP_FAILURE', kind: 'enum', values: ['open', 'closed'], default: 'open', doc: 'when HIBP cannot be reached: accept (open) or refuse (closed)' },
  { env: 'BULWARK_HIBP_TIMEOUT', kind: 'duration', default: '1500ms', min: 100, max: 30_000, doc: 'HIBP request timeout' },
  { env: 'BULWARK_HIBP_URL', kind: 'url', default: 'https://api.pwnedpasswords.com/range/', doc: 'HIBP range endpoint' },
  // lockout
  { env: 'BULWARK_LOCKOUT_THRESHOLD', kind: 'int', default: '5', min: 1, max: 1000, doc: 'failed passwords within the window that lock an account' },
  { env: 'BULWARK_LOCKOUT_WINDOW', kind: 'duration', default: '15m', min: 1000, max: DAY, doc: 'window in which failures are counted' },
  { env: 'BULWARK_LOCKOUT_BASE', kind: 'duration', default: '1m', min: 1000, max: DAY, doc: 'first lock duration; doubles with each further lock' },
  { env: 'BULWARK_LOCKOUT_MAX', kind: 'duration', default: '24h', profiles: { development: '5m' }, min: 1000, max: 365 * DAY, doc: 'longest temporary lock' },
  { env: 'BULWARK_LOCKOUT_PERMANENT_AFTER', kind: 'int', default: '0', min: 0, max: 1000, doc: 'lock permanently (until unlocked) after this many temporary locks; 0 = never' },
  // rate limits
  { env: 'BULWARK_RATE_LIMIT', kind: 'enum', values: ['on', 'off'], default: 'on', doc: 'all rate limiting' },
  { env: 'BULWARK_RATE_LIMIT_ANON', kind: 'int', default: '300', profiles: { development: '1200' }, min: 1, max: 1_000_000, doc: 'requests per minute per client IP for anonymous callers' },
  { env: 'BULWARK_RATE_LIMIT_USER', kind: 'int', default: '600', min: 1, max: 1_000_000, doc: 'requests per minute per user of level < 50' },
  { env: 'BULWARK_RATE_LIMIT_MODERATOR', kind: 'int', default: '1200', min: 1, max: 1_000_000, doc: 'requests per minute per user of level 50-89' },
  { env: 'BULWARK_RATE_LIMIT_ADMIN', kind: 'int', default: '3000', min: 1, max: 1_000_000, doc: 'requests per minute per user of level >= 90' },
  { env: 'BULWARK_RATE_LIMIT_PENALTY_MAX', kind: 'duration', default: '24h', profiles: { development: '1m' }, min: 1000, max: 30 * DAY, doc: 'longest escalated block' },
  { env: 'BULWARK_RATE_LIMIT_PENALTY_DECAY', kind: 'duration', default: '1h', profiles: { development: '1m' }, min: 1000, max: 30 * DAY, doc: 'quiet period after which the penalty level resets' },
  { env: 'BULWARK_RATE_LIMIT_ALLOWLIST', kind: 'list', default: '', doc: 'IPs or CIDRs exempt from rate limits' },
  { env: 'BULWARK_RATE_LIMIT_ROUTES', kind: 'list', default: '', doc: 'overrides of the sensitive-route limits, `name=count/window` comma-separated, e.g. `login-ip=20/1m,register-ip=10/1h` (names in the README; development has its own defaults, see "Profiles")' },
  { env: 'BULWARK_RATE_LIMIT_MAX_KEYS', kind: 'int', default: '100000', min: 100, max: 10_000_000, doc: 'keys the in-memory rate-limit store keeps (least recently used go first)' },
  { env: 'BULWARK_REDIS_TIMEOUT', kind: 'duration', default: '200ms', min: 10, max: 10_000, doc: 'Redis command timeout; a slower Redis counts as failed and the in-memory fallback answers' },
  { env: 'BULWARK_REDIS_PREFIX', kind: 'string', default: 'bulwark:', doc: 'prefix of every Redis key (several deployments can share one Redis)' },
  // caches
  { env: 'BULWARK_CACHE_MAX_ENTRIES', kind: 'int', default: '10000', min: 10, max: 10_000_000, doc: 'entries of each in-process cache' },
  { env: 'BULWARK_CACHE_TTL', kind: 'duration', default: '60s', min: 1000, max: DAY, doc: 'lifetime of cached permission resolutions' },
  // second factors
  { env: 'BULWARK_TOTP_ISSUER', kind: 'string', default: 'Bulwark', doc: 'issuer shown by authenticator apps' },
  { env: 'BULWARK_TOTP_ALGORITHM', kind: 'enum', values: ['SHA1', 'SHA256', 'SHA512'], default: 'SHA1', doc: 'algorithm of new TOTP enrolments' },
  { env: 'BULWARK_TOTP_DIGITS', kind: 'enum', values: ['6', '8'], default: '6', doc: 'digits of new TOTP enrolments' },
  { env: 'BULWARK_TOTP_WINDOW', kind: 'int', default: '1', min: 0, max: 5, doc: 'accepted steps either side of now' },
  // audit trail
  { env: 'BULWARK_AUDIT_DENIALS_PER_SOURCE', kind: 'int', default: '10', min: 1, max: 100_000, doc: 'refusal events (token_rejected, access_denied, request_rejected) written per type per user or client address per minute' },
  { env: 'BULWARK_AUDIT_DENIALS_PER_TYPE', kind: 'int', default: '600', min: 1, max: 1_000_000, doc: 'refusal events written per type per minute over all sources' },
  // storage
  { env: 'BULWARK_DB_BUSY_TIMEOUT', kind: 'duration', default: '50ms', min: 0, max: 10_000, doc: 'how long one database statement waits for another process\'s write lock; the wait blocks every request, so keep it short' },
  { env: 'BULWARK_DB_CHECKPOINT', kind: 'enum', values: ['background', 'inline'], default: 'background', doc: 'SQLite: `background` copies the write-ahead log into the database file from a worker thread, off the request path (about 5 MiB more memory); `inline` leaves it to SQLite, in the commit that crosses every 1,000 log pages' },
  { env: 'BULWARK_DB_MMAP_MIB', kind: 'int', default: '0', min: 0, max: 2047, doc: 'SQLite: how much of the database file is read through a memory map (MiB, up to SQLite\'s own ceiling of 2047); 0 reads pages with read() into the 16 MiB page cache, the kernel keeping the rest in its file cache outside the process' },
  { env: 'BULWARK_DB_BUSY_RETRY', kind: 'duration', default: '2s', min: 0, max: 60_000, doc: 'how long a request refused by a held write lock (before it changed anything) is retried, without blocking others, before 503 storage_busy' },
  { env: 'BULWARK_RETENTION_SECURITY_EVENTS', kind: 'duration', default: '365d', min: 0, max: 3650 * DAY, doc: 'security events older than this are pruned; 0 keeps them forever' },
  { env: 'BULWARK_RETENTION_SESSIONS', kind: 'duration', default: '7d', min: 0, max: 365 * DAY, doc: 'ended sessions (revoked, expired, idle) and spent refresh tokens are pruned this long after they end; 0 keeps them' },
  { env: 'BULWARK_RETENTION_MAIL', kind: 'duration', default: '1d', min: 0, max: 365 * DAY, doc: 'sent (or kept) outbox mail is pruned this long after it was queued; 0 keeps it' },
  { env: 'BULWARK_RETENTION_TOKENS', kind: 'duration', default: '1d', min: 0, max: 365 * DAY, doc: 'mailed tokens and challenges are pruned this long after they expire; 0 keeps them' },
  // PostgreSQL (src/db/pg/): schema, migrations and `bulwark db copy` today; see the README's "PostgreSQL"
  { env: 'BULWARK_DATABASE_URL', kind: 'url', maskPassword: true, doc: '`postgres://user:password@host:5432/db` (or postgresql://) selects PostgreSQL instead of the embedded SQLite; the password is masked by `config check`. The server does not serve on it yet (see "PostgreSQL")' },
  { env: 'BULWARK_DB_POOL_SIZE', kind: 'int', default: '10', min: 1, max: 1000, doc: 'PostgreSQL connections per process' },
  { env: 'BULWARK_DB_STATEMENT_TIMEOUT', kind: 'duration', default: '30s', min: 0, max: HOUR, doc: 'PostgreSQL statement_timeout of every connection; 0 = none' },
  { env: 'BULWARK_DB_TLS', kind: 'enum', values: ['disable', 'require', 'verify-full'], default: 'disable', doc: 'TLS to PostgreSQL: disable, require (encrypted, certificate unchecked) or verify-full (certificate and host name checked)' },
  { env: 'BULWARK_DB_TLS_CA_FILE', kind: 'string', doc: 'CA bundle (PEM) that verifies the PostgreSQL server certificate under BULWARK_DB_TLS=verify-full (default: the system CAs)' },
  { env: 'BULWARK_DB_ALLOW_PLAINTEXT', kind: 'bool', default: '0', doc: '1 lets production connect to a non-loopback PostgreSQL host without TLS' },
  { env: 'BULWARK_PRUNE_INTERVAL', kind: 'duration', default: '10m', min: 1000, max: DAY, doc: 'how often the background pruner runs' },
] as const satisfies readonly Setting[]

export type Env = 'development' | 'test' | 'production'

/** The validated configuration every part of Bulwark reads. */
export interface Config {
  env: Env
  host: string
  port: number
  secret: string | undefined
  secretSource: 'env' | 'file' | 'generated' | 'none'
  allowHttp: boolean
  dataDir: string
  dbPath: string
  publicUrl: string
  webauthn: { rpId: string; origins: string[] }
  /**
   * What was left unset and so follows the listening address once the server is bound (BULWARK_PORT=0
   * included): the public URL, and the WebAuthn RP id and origins derived from it. See `followListener`.
   */
  follows: { publicUrl: boolean; rpId: boolean; origins: boolean }
  /** Link templates of the mails, `{token}` replaced (from BULWARK_MAIL_LINK_* or BULWARK_APP_URL); unset: no link. */
  mailLinks: { verify?: string; reset?: string; unlock?: string }
  /** BULWARK_* variables that are not settings, one line each with the closest known name (warnings outside production). */
  unknownVariables: string[]
  corsOrigins: string[]
  trustProxy: string[]
  redisUrl: string | undefined
  clamd: string | undefined
  /** clamd deadlines: connect + PING (`connectMs`), then the scan itself (`scanMs`). */
  clamdTimeouts: { connectMs: number; scanMs: number }
  uploads: { enabled: boolean; scan: boolean; maxBytes: number }
  metricsToken: string | undefined
  /** Separate listener for /metrics and /health/* (BULWARK_MANAGEMENT_PORT); undefined port: none. */
  management: { port: number | undefined; host: string }
  metricsPublic: boolean
  bodyTimeoutMs: number
  admin: { email: string | undefined; password: string | undefined }
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent'
  smtpUrl: string | undefined
  mailFrom: string
  alertWebhookUrl: string | undefined
  alertWebhookSecret: string | undefined
  /** Outgoing webhooks (src/modules/webhooks): SSRF policy, attempt timeout, retry schedule (ms), disabling. */
  webhooks: { allowPrivate: boolean; timeoutMs: number; scheduleMs: number[]; disableAfterMs: number; disableFailures: number; pollMs: number }
  bodyLimit: number
  idleTimeoutMs: number
  shutdownGraceMs: number
  jwt: { alg: 'EdDSA' | 'ES256'; audience: string; accessTtlMs: number; rotationIntervalMs: number }
  /** BULWARK_TOKEN_CLAIMS / _MAX: optional authorisation claims in user access tokens. */
  tokenClaims: { include: ('roles' | 'permissions' | 'scope')[]; max: number }
  /** BULWARK_OLD_SECRET: only `bulwark secret rotate` reads it. */
  oldSecret: string | undefined
  session: { idleTtlMs: number; absoluteTtlMs: number; refreshReuseGraceMs: number }
  tokens: { emailVerifyTtlMs: number; passwordResetTtlMs: number; mfaTokenTtlMs: number; stepUpTtlMs: number }
  password: {
    argon2MemoryKib: number
    argon2Time: number
    minLength: number
    maxLength: number
    minScore: number
    history: number
    scorer: 'worker' | 'inline'
    scorerIdleMs: number
    hibp: { enabled: boolean; failClosed: boolean; timeoutMs: number; url: string }
  }
  lockout: { threshold: number; windowMs: number; baseMs: number; maxMs: number; permanentAfter: number }
  rateLimit: {
    enabled: boolean
    anonPerMin: number
    userPerMin: number
    moderatorPerMin: number
    adminPerMin: number
    penaltyMaxMs: number
    penaltyDecayMs: number
    allowlist: string[]
    /** Overrides of the route-limit table (src/lib/rate-limiter.ts), by policy name. */
    routes: Record<string, { limit: number; windowMs: number }>
    maxKeys: number
  }
  redis: { timeoutMs: number; prefix: string }
  cache: { maxEntries: number; ttlMs: number }
  totp: { issuer: string; algorithm: 'SHA1' | 'SHA256' | 'SHA512'; digits: 6 | 8; window: number }
  auditDenials: { perSource: number; perType: number }
  db: { busyTimeoutMs: number; busyRetryMs: number; checkpoint: 'background' | 'inline'; mmapMib: number }
  /** PostgreSQL (BULWARK_DATABASE_URL); undefined: the embedded SQLite at dbPath. */
  pg: PgConfig | undefined
  /** How long finished rows are kept (ms; 0 = forever) and how often the pruner runs. */
  retention: { securityEventsMs: number; sessionsMs: number; mailMs: number; tokensMs: number; intervalMs: number }
}

export interface PgConfig {
  url: string
  poolSize: number
  statementTimeoutMs: number
  tls: 'disable' | 'require' | 'verify-full'
  caFile: string | undefined
  allowPlaintext: boolean
}


const PG_LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|\[::1\])$/i

/** BULWARK_DATABASE_URL and its companions, validated (one line per problem). */
function pgSettings(v: Record<string, unknown>, problems: string[]): PgConfig | undefined {
  const url = v.BULWARK_DATABASE_URL as string | undefined
  const tls = v.BULWARK_DB_TLS as PgConfig['tls']
  const caFile = v.BULWARK_DB_TLS_CA_FILE as string | undefined
  if (url === undefined) return undefined
  let u: URL | undefined
  try {
    u = new URL(url)
  } catch {}
  if (!u || (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') || !u.hostname) {
    problems.push('BULWARK_DATABASE_URL must be a postgres:// or postgresql:// URL with a host, e.g. postgres://bulwark:password@db.internal:5432/bulwark')
    return undefined
  }
  if (caFile !== undefined && tls !== 'verify-full') problems.push(`BULWARK_DB_TLS_CA_FILE is only read with BULWARK_DB_TLS=verify-full (got ${tls})`)
  if (caFile !== undefined) {
    try {
      readFileSync(caFile)
    } catch {
      problems.push(`BULWARK_DB_TLS_CA_FILE: cannot read ${caFile}`)
    }
  }
  const sslmode = u.searchParams.get('sslmode')
  if (sslmode !== null) problems.push('BULWARK_DATABASE_URL: set TLS with BULWARK_DB_TLS, not ?sslmode= in the URL')
  return {
    url,
    poolSize: v.BULWARK_DB_POOL_SIZE as number,
    statementTimeoutMs: v.BULWARK_DB_STATEMENT_TIMEOUT as number,
    tls,
    caFile,
    allowPlaintext: v.BULWARK_DB_ALLOW_PLAINTEXT as boolean,
  }
}

/** Production refusals for PostgreSQL: no plaintext to a remote host unless allowed; not served on yet. */
function pgProductionProblems(pg: PgConfig | undefined): string[] {
  if (!pg) return []
  const p: string[] = []
  const host = new URL(pg.url).hostname
  if (pg.tls === 'disable' && !PG_LOOPBACK.test(host) && !pg.allowPlaintext) {
    p.push(`BULWARK_DATABASE_URL: host ${host} is not loopback and BULWARK_DB_TLS=disable would send passwords and data in clear; set BULWARK_DB_TLS=verify-full (or require), or BULWARK_DB_ALLOW_PLAINTEXT=1 knowingly`)
  }
  return p
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
  }
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: MIN, h: HOUR, d: DAY }

const TOKEN_CLAIMS = new Set(['roles', 'permissions', 'scope'])

/** Parses `500ms`, `30s`, `15m`, `24h`, `7d` or a plain number of seconds into milliseconds. */
export function parseDuration(raw: string): number | undefined {
  const m = /^(\d{1,12})(ms|s|m|h|d)?$/.exec(raw.trim())
  if (!m) return undefined
  return Number(m[1]) * UNITS[m[2] ?? 's']!
}

function parseBytes(raw: string): number | undefined {
  const m = /^(\d{1,13})(b|kib|mib|gib|kb|mb|gb|k|m|g)?$/i.exec(raw.trim())
  if (!m) return undefined
  const unit = (m[2] ?? 'b').toLowerCase()
  const mult = unit === 'b' ? 1 : unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 ** 2 : 1024 ** 3
  return Number(m[1]) * mult
}

type Raw = Record<string, string | undefined>

/** Parses `login-ip=20/1m` entries of BULWARK_RATE_LIMIT_ROUTES against the known policy names. */
function parseRouteLimits(list: string[], problems: string[]): Record<string, { limit: number; windowMs: number }> {
  const out: Record<string, { limit: number; windowMs: number }> = {}
  for (const item of list) {
    const m = /^([a-z-]{1,40})=(\d{1,9})\/(\w{1,16})$/.exec(item)
    const windowMs = m ? parseDuration(m[3]!) : undefined
    if (!m || windowMs === undefined || Number(m[2]) < 1 || windowMs < 1000) {
      problems.push(`BULWARK_RATE_LIMIT_ROUTES: "${item.slice(0, 60)}" must look like name=count/window, e.g. login-ip=20/1m`)
      continue
    }
    if (!(ROUTE_POLICY_NAMES as readonly string[]).includes(m[1]!)) {
      problems.push(`BULWARK_RATE_LIMIT_ROUTES: unknown limit "${m[1]}"; known: ${ROUTE_POLICY_NAMES.join(', ')}`)
      continue
    }
    out[m[1]!] = { limit: Number(m[2]), windowMs }
  }
  return out
}

/** Reads `NAME` or `NAME_FILE` (both set is a problem: which one wins would be a surprise). */
function readRaw(env: Raw, name: string, problems: string[]): { value: string | undefined; fromFile: boolean } {
  const direct = env[name]
  const file = env[`${name}_FILE`]
  if (direct !== undefined && file !== undefined) {
    problems.push(`${name} and ${name}_FILE are both set; set only one`)
    return { value: direct, fromFile: false }
  }
  if (file !== undefined) {
    try {
      return { value: readFileSync(file, 'utf8').replace(/\r?\n$/, ''), fromFile: true }
    } catch {
      problems.push(`${name}_FILE: cannot read ${file}`)
      return { value: undefined, fromFile: true }
    }
  }
  return { value: direct === '' && name !== 'BULWARK_CORS_ORIGINS' ? undefined : direct, fromFile: false }
}

function schemaOf(s: Setting): TSchema {
  switch (s.kind) {
    case 'int':
    case 'duration':
    case 'bytes':
      return T.Integer({ minimum: s.min ?? 0, maximum: s.max ?? Number.MAX_SAFE_INTEGER })
    case 'bool':
      return T.Boolean()
    case 'list':
      return T.Array(T.String({ minLength: 1, maxLength: 2048 }), { maxItems: 256 })
    case 'enum':
      return T.Union((s.values ?? []).map((v) => T.Literal(v)))
    case 'url':
      return T.String({ pattern: '^[a-z][a-z0-9+.-]*://', maxLength: 2048 })
    default:
      return T.String({ maxLength: 4096 })
  }
}

function convert(s: Setting, raw: string): unknown {
  switch (s.kind) {
    case 'int':
      return /^-?\d{1,15}$/.test(raw.trim()) ? Number(raw.trim()) : raw
    case 'duration':
      return parseDuration(raw) ?? raw
    case 'bytes':
      return parseBytes(raw) ?? raw
    case 'bool': {
      const v = raw.trim().toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(v)) return true
      if (['0', 'false', 'no', 'off', ''].includes(v)) return false
      return raw
    }
    case 'list':
      return raw.split(',').map((x) => x.trim()).filter((x) => x.length > 0)
    default:
      return raw
  }
}

function describe(s: Setting): string {
  switch (s.kind) {
    case 'int':
      return `a whole number from ${s.min} to ${s.max}`
    case 'duration':
      return `a duration such as 30s, 15m, 24h or 7d, between ${s.min}ms and ${s.max}ms`
    case 'bytes':
      return `a size in bytes (or 512KiB, 10MiB) from ${s.min} to ${s.max}`
    case 'bool':
      return '0 or 1'
    case 'enum':
      return `one of ${(s.values ?? []).join(', ')}`
    case 'url':
      return 'an absolute URL'
    default:
      return 'a string'
  }
}

/** Rough entropy check for the master secret: long enough and not one repeated pattern. */
export function secretProblems(secret: string | undefined): string[] {
  if (secret === undefined) return ['BULWARK_SECRET is required in production (at least 32 bytes of random data)']
  const bytes = Buffer.byteLength(secret, 'utf8')
  if (bytes < 32) return [`BULWARK_SECRET is too short (${bytes} bytes); use at least 32 random bytes, e.g. \`openssl rand -base64 48\``]
  if (new Set(secret).size < 12) return ['BULWARK_SECRET has too little variety to be random; use `openssl rand -base64 48`']
  return []
}

const isHttps = (u: string) => u.toLowerCase().startsWith('https://')

/** The production refusals: one readable line per unsafe setting. */
export function productionProblems(c: Config): string[] {
  const p: string[] = []
  if (c.secretSource !== 'env' && c.secretSource !== 'file') p.push(...secretProblems(undefined))
  else p.push(...secretProblems(c.secret))
  for (const o of c.corsOrigins) {
    if (o.includes('*')) p.push(`BULWARK_CORS_ORIGINS: wildcard origin "${o}" is not allowed in production; list exact origins`)
    else if (o.toLowerCase().startsWith('http://') && !c.allowHttp) p.push(`BULWARK_CORS_ORIGINS: "${o}" is plain http; use https (or BULWARK_ALLOW_HTTP=1)`)
  }
  if (c.follows.publicUrl && !c.allowHttp) p.push('BULWARK_PUBLIC_URL is required in production: the https URL clients reach Bulwark at (the issuer of every token)')
  else if (!isHttps(c.publicUrl) && !c.allowHttp) p.push(`BULWARK_PUBLIC_URL must be https in production (got ${c.publicUrl}); set BULWARK_ALLOW_HTTP=1 to run behind plain HTTP knowingly`)
  for (const [name, link] of Object.entries(c.mailLinks)) {
    if (link && !isHttps(link) && !c.allowHttp) p.push(`mail link for ${name} (${link.slice(0, 60)}) is not https; mails would carry tokens over plain http links`)
  }
  for (const o of c.webauthn.origins) {
    if (!isHttps(o) && !c.allowHttp) p.push(`BULWARK_WEBAUTHN_ORIGINS: "${o}" is not https`)
  }
  if (c.uploads.enabled && c.uploads.scan && !c.clamd) p.push('BULWARK_CLAMD is required in production while uploads are on; set BULWARK_UPLOADS_SCAN=off to accept unscanned uploads explicitly, or BULWARK_UPLOADS=0')
  if (c.smtpUrl && c.smtpUrl.toLowerCase().startsWith('smtp://') && !c.allowHttp && !/[?&]requireTLS=true/i.test(c.smtpUrl)) {
    p.push('BULWARK_SMTP_URL: smtp:// without ?requireTLS=true would send reset links in clear; use smtps:// or add requireTLS=true')
  }
  p.push(...pgProductionProblems(c.pg))
  if (c.dbPath === ':memory:') p.push('BULWARK_DB_PATH=:memory: loses every write on restart; not allowed in production')
  if (c.logLevel === 'debug') p.push('BULWARK_LOG_LEVEL=debug is not allowed in production')
  if (!c.metricsToken && c.management.port === undefined && !c.metricsPublic) {
    p.push('/metrics would be public on the main listener: set BULWARK_METRICS_TOKEN, or BULWARK_MANAGEMENT_PORT (a separate, loopback-bound listener), or BULWARK_METRICS_PUBLIC=1 to allow it knowingly')
  }
  if (c.admin.password !== undefined && !c.admin.email) p.push('BULWARK_ADMIN_PASSWORD is set without BULWARK_ADMIN_EMAIL')
  return p
}

/** Warnings that do not stop a start but deserve a line in the log. */
export function configWarnings(c: Config): string[] {
  const w: string[] = []
  if (c.env === 'production' && c.allowHttp) w.push('BULWARK_ALLOW_HTTP=1: cookies are not Secure and HSTS is off; only run like this behind a TLS-terminating proxy')
  if (c.oldSecret !== undefined) w.push('BULWARK_OLD_SECRET is set: only `bulwark secret rotate` reads it; remove it from the server environment once the rotation is done')
  if (c.env === 'production' && !c.metricsToken && c.management.port === undefined) w.push('BULWARK_METRICS_PUBLIC=1 and no BULWARK_METRICS_TOKEN: /metrics is readable by anyone who can reach the port')
  if (c.env === 'production' && c.uploads.enabled && !c.uploads.scan) w.push('BULWARK_UPLOADS_SCAN=off: uploads are stored without a virus scan')
  if (c.env === 'production' && c.follows.publicUrl) w.push(`BULWARK_PUBLIC_URL is not set: the issuer follows the listening address (${c.publicUrl}); set it to the URL clients use`)
  if (c.env !== 'production') w.push(...c.unknownVariables)
  return w
}

/** The profile (BULWARK_ENV) that picks the defaults; an invalid value is reported by loadConfig. */
function profileOf(env: Raw): Env {
  const { value } = readRaw(env, 'BULWARK_ENV', [])
  return value === 'production' || value === 'test' ? value : 'development'
}

const defaultFor = (s: Setting, profile: Env): string | undefined => s.profiles?.[profile] ?? s.default

/**
 * BULWARK_* variables that are not settings (nor their `_FILE` form), each with the closest known
 * name. `BULWARK_TEST_*` belong to Bulwark's own test suite and are left alone.
 */
export function unknownVariables(env: Raw): string[] {
  const known = new Set((SETTINGS as readonly Setting[]).flatMap((s) => [s.env, `${s.env}_FILE`]))
  const out: string[] = []
  for (const name of Object.keys(env).sort()) {
    const upper = name.toUpperCase()
    if (!upper.startsWith('BULWARK_') || upper.startsWith('BULWARK_TEST_') || known.has(name) || env[name] === undefined) continue
    const near = closestName(name, known)
    out.push(`${name.slice(0, 80)} is not a Bulwark setting${near ? `; did you mean ${near}?` : ' (see `bulwark config check` for the list)'}`)
  }
  return out
}

const LOCAL_HOSTS = /^(localhost|127(\.\d{1,3}){3}|::1|0\.0\.0\.0|::)$/i

/**
 * The URL a server bound to host:port is reached at when BULWARK_PUBLIC_URL is unset. Loopback and
 * wildcard addresses become `localhost`: a browser on the same machine reaches them so, and WebAuthn
 * accepts `localhost` as an RP id where it refuses an IP address.
 */
export function listenerUrl(host: string, port: number): string {
  const name = LOCAL_HOSTS.test(host) ? 'localhost' : host.includes(':') ? `[${host}]` : host
  return `http://${name}:${port}`
}

/** Once bound: the public URL (and the WebAuthn RP id and origins) that were left unset follow the real port. */
export function followListener(config: Config, port: number): void {
  if (!config.follows.publicUrl) return
  config.publicUrl = listenerUrl(config.host, port)
  const u = new URL(config.publicUrl)
  if (config.follows.rpId) config.webauthn.rpId = u.hostname
  if (config.follows.origins) config.webauthn.origins = [u.origin]
}

/** Default path of each mail link under BULWARK_APP_URL; the token travels in the fragment, out of server logs and Referer. */
export const MAIL_LINK_PATHS = { verify: '/verify-email', reset: '/reset-password', unlock: '/unlock' } as const

function mailLinkTemplates(v: Record<string, unknown>, problems: string[]): Config['mailLinks'] {
  const app = (v.BULWARK_APP_URL as string | undefined)?.replace(/\/+$/, '')
  if (app !== undefined && !/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/i.test(app)) problems.push('BULWARK_APP_URL must be an http:// or https:// URL without query or fragment')
  const out: Config['mailLinks'] = {}
  for (const [kind, path] of Object.entries(MAIL_LINK_PATHS) as [keyof Config['mailLinks'], string][]) {
    const name = `BULWARK_MAIL_LINK_${kind.toUpperCase()}`
    const template = v[name] as string | undefined
    if (template === undefined) {
      if (app !== undefined) out[kind] = `${app}${path}#token={token}`
      continue
    }
    let valid = /^https?:\/\/\S+$/i.test(template)
    try {
      new URL(template.replaceAll('{token}', 'x'))
    } catch {
      valid = false
    }
    if (!template.includes('{token}')) problems.push(`${name} must contain {token}, where the token goes (e.g. https://app.example.com/${kind}?token={token})`)
    else if (!valid) problems.push(`${name} must be an absolute http:// or https:// URL (got "${template.slice(0, 60)}")`)
    else out[kind] = template
  }
  return out
}

/**
 * Turns an environment into a Config. Throws ConfigError listing every problem at once; in production
 * the unsafe-setting refusals are included.
 */
export function loadConfig(env: Raw = process.env): Config {
  const problems: string[] = []
  const v: Record<string, unknown> = {}
  let secretFromFile = false
  const profile = profileOf(env)
  for (const s of SETTINGS as readonly Setting[]) {
    const { value, fromFile } = readRaw(env, s.env, problems)
    if (s.env === 'BULWARK_SECRET') secretFromFile = fromFile
    const raw = value ?? defaultFor(s, profile)
    if (raw === undefined) continue
    const converted = convert(s, raw)
    if (!Value.Check(schemaOf(s), converted)) {
      problems.push(`${s.env} must be ${describe(s)}${s.secret || s.maskPassword ? '' : ` (got "${raw.slice(0, 60)}")`}`)
      continue
    }
    v[s.env] = converted
  }
  const unknown = unknownVariables(env)
  if (profile === 'production') problems.push(...unknown)
  const publicUrlSet = v.BULWARK_PUBLIC_URL !== undefined
  const publicUrl = publicUrlSet ? String(v.BULWARK_PUBLIC_URL).replace(/\/+$/, '') : listenerUrl(String(v.BULWARK_HOST ?? '127.0.0.1'), Number(v.BULWARK_PORT ?? 3000))
  let publicHost = 'localhost'
  let publicOrigin = publicUrl
  try {
    const u = new URL(publicUrl)
    publicHost = u.hostname
    publicOrigin = u.origin
    if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push('BULWARK_PUBLIC_URL must be http:// or https://')
  } catch {
    problems.push(`BULWARK_PUBLIC_URL is not a valid URL`)
  }
  for (const c of (v.BULWARK_TOKEN_CLAIMS as string[] | undefined) ?? []) if (!TOKEN_CLAIMS.has(c)) problems.push(`BULWARK_TOKEN_CLAIMS: "${c}" is not one of roles, permissions, scope`)
  for (const o of (v.BULWARK_CORS_ORIGINS as string[] | undefined) ?? []) {
    if (o === '*') continue
    try {
      const u = new URL(o)
      if (u.origin !== o) problems.push(`BULWARK_CORS_ORIGINS: "${o}" is not an origin (scheme://host[:port], no path or trailing slash)`)
    } catch {
      problems.push(`BULWARK_CORS_ORIGINS: "${o}" is not an origin`)
    }
  }
  const redisUrl = v.BULWARK_REDIS_URL as string | undefined
  if (redisUrl && !/^rediss?:\/\//.test(redisUrl)) problems.push('BULWARK_REDIS_URL must start with redis:// or rediss://')
  const smtpUrl = v.BULWARK_SMTP_URL as string | undefined
  if (smtpUrl && !/^smtps?:\/\//.test(smtpUrl)) problems.push('BULWARK_SMTP_URL must start with smtp:// or smtps://')
  const minLen = (v.BULWARK_PASSWORD_MIN_LENGTH as number) ?? 12
  const maxLen = (v.BULWARK_PASSWORD_MAX_LENGTH as number) ?? 128
  if (minLen > maxLen) problems.push('BULWARK_PASSWORD_MIN_LENGTH is greater than BULWARK_PASSWORD_MAX_LENGTH')
  const rotation = (v.BULWARK_KEY_ROTATION_INTERVAL as number | undefined) ?? 0
  if (rotation > 0 && rotation < HOUR) problems.push('BULWARK_KEY_ROTATION_INTERVAL must be 0 (off) or at least 1h')
  const routeLimits = { ...profileRouteLimits(profile), ...parseRouteLimits((v.BULWARK_RATE_LIMIT_ROUTES as string[] | undefined) ?? [], problems) }
  const mailLinks = mailLinkTemplates(v, problems)
  const webhookSchedule = ((v.BULWARK_WEBHOOK_RETRY_SCHEDULE as string[] | undefined) ?? []).map((d) => parseDuration(d) ?? Number.NaN)
  if (webhookSchedule.length > 20 || webhookSchedule.some((ms) => !Number.isFinite(ms) || ms < 100 || ms > 7 * DAY)) {
    problems.push('BULWARK_WEBHOOK_RETRY_SCHEDULE must be up to 20 comma-separated durations from 100ms to 7d, e.g. 5s,5m,30m,2h')
  }
  const alertSecret = v.BULWARK_ALERT_WEBHOOK_SECRET as string | undefined
  if (alertSecret !== undefined && !/^whsec_[A-Za-z0-9+/]{32,}={0,2}$/.test(alertSecret)) problems.push('BULWARK_ALERT_WEBHOOK_SECRET must be whsec_ followed by at least 24 bytes in base64')
  const pg = pgSettings(v, problems)
  for (const c of invalidCidrs((v.BULWARK_RATE_LIMIT_ALLOWLIST as string[] | undefined) ?? [])) problems.push(`BULWARK_RATE_LIMIT_ALLOWLIST: "${c}" is not an address or CIDR`)
  if (problems.length > 0) throw new ConfigError(problems)

  const dataDir = v.BULWARK_DATA_DIR as string
  const secret = v.BULWARK_SECRET as string | undefined
  const config: Config = {
    env: v.BULWARK_ENV as Env,
    host: v.BULWARK_HOST as string,
    port: v.BULWARK_PORT as number,
    secret,
    secretSource: secret === undefined ? 'none' : secretFromFile ? 'file' : 'env',
    allowHttp: v.BULWARK_ALLOW_HTTP as boolean,
    dataDir,
    dbPath: (v.BULWARK_DB_PATH as string | undefined) ?? `${dataDir.replace(/\/+$/, '')}/bulwark.sqlite`,
    publicUrl,
    webauthn: {
      rpId: (v.BULWARK_WEBAUTHN_RP_ID as string | undefined) ?? publicHost,
      origins: (v.BULWARK_WEBAUTHN_ORIGINS as string[] | undefined) ?? [publicOrigin],
    },
    follows: { publicUrl: !publicUrlSet, rpId: v.BULWARK_WEBAUTHN_RP_ID === undefined, origins: v.BULWARK_WEBAUTHN_ORIGINS === undefined },
    mailLinks,
    unknownVariables: unknown,
    corsOrigins: v.BULWARK_CORS_ORIGINS as string[],
    trustProxy: v.BULWARK_TRUST_PROXY as string[],
    redisUrl,
    clamd: v.BULWARK_CLAMD as string | undefined,
    clamdTimeouts: { connectMs: v.BULWARK_CLAMD_CONNECT_TIMEOUT as number, scanMs: v.BULWARK_CLAMD_TIMEOUT as number },
    uploads: { enabled: v.BULWARK_UPLOADS as boolean, scan: v.BULWARK_UPLOADS_SCAN === 'on', maxBytes: v.BULWARK_UPLOAD_MAX_BYTES as number },
    metricsToken: v.BULWARK_METRICS_TOKEN as string | undefined,
    management: { port: v.BULWARK_MANAGEMENT_PORT as number | undefined, host: v.BULWARK_MANAGEMENT_HOST as string },
    metricsPublic: v.BULWARK_METRICS_PUBLIC as boolean,
    bodyTimeoutMs: v.BULWARK_BODY_TIMEOUT as number,
    admin: { email: v.BULWARK_ADMIN_EMAIL as string | undefined, password: v.BULWARK_ADMIN_PASSWORD as string | undefined },
    logLevel: v.BULWARK_LOG_LEVEL as Config['logLevel'],
    smtpUrl,
    mailFrom: v.BULWARK_MAIL_FROM as string,
    alertWebhookUrl: v.BULWARK_ALERT_WEBHOOK_URL as string | undefined,
    alertWebhookSecret: v.BULWARK_ALERT_WEBHOOK_SECRET as string | undefined,
    webhooks: {
      allowPrivate: v.BULWARK_WEBHOOK_ALLOW_PRIVATE as boolean,
      timeoutMs: v.BULWARK_WEBHOOK_TIMEOUT as number,
      scheduleMs: webhookSchedule,
      disableAfterMs: v.BULWARK_WEBHOOK_DISABLE_AFTER as number,
      disableFailures: v.BULWARK_WEBHOOK_DISABLE_FAILURES as number,
      pollMs: v.BULWARK_WEBHOOK_POLL_INTERVAL as number,
    },
    bodyLimit: v.BULWARK_BODY_LIMIT as number,
    idleTimeoutMs: v.BULWARK_IDLE_TIMEOUT as number,
    shutdownGraceMs: v.BULWARK_SHUTDOWN_GRACE as number,
    jwt: { alg: v.BULWARK_JWT_ALG as 'EdDSA' | 'ES256', audience: v.BULWARK_JWT_AUDIENCE as string, accessTtlMs: v.BULWARK_ACCESS_TOKEN_TTL as number, rotationIntervalMs: v.BULWARK_KEY_ROTATION_INTERVAL as number },
    tokenClaims: { include: (v.BULWARK_TOKEN_CLAIMS as string[]).filter((c): c is 'roles' | 'permissions' | 'scope' => TOKEN_CLAIMS.has(c)), max: v.BULWARK_TOKEN_CLAIMS_MAX as number },
    oldSecret: v.BULWARK_OLD_SECRET as string | undefined,
    session: {
      idleTtlMs: v.BULWARK_SESSION_IDLE_TTL as number,
      absoluteTtlMs: v.BULWARK_SESSION_ABSOLUTE_TTL as number,
      refreshReuseGraceMs: v.BULWARK_REFRESH_REUSE_GRACE as number,
    },
    tokens: {
      emailVerifyTtlMs: v.BULWARK_EMAIL_VERIFY_TTL as number,
      passwordResetTtlMs: v.BULWARK_PASSWORD_RESET_TTL as number,
      mfaTokenTtlMs: v.BULWARK_MFA_TOKEN_TTL as number,
      stepUpTtlMs: v.BULWARK_STEP_UP_TTL as number,
    },
    password: {
      argon2MemoryKib: v.BULWARK_ARGON2_MEMORY_KIB as number,
      argon2Time: v.BULWARK_ARGON2_TIME as number,
      minLength: minLen,
      maxLength: maxLen,
      minScore: v.BULWARK_PASSWORD_MIN_SCORE as number,
      history: v.BULWARK_PASSWORD_HISTORY as number,
      scorer: v.BULWARK_PASSWORD_SCORER as 'worker' | 'inline',
      scorerIdleMs: v.BULWARK_PASSWORD_SCORER_IDLE as number,
      hibp: {
        enabled: v.BULWARK_HIBP === 'on',
        failClosed: v.BULWARK_HIBP_FAILURE === 'closed',
        timeoutMs: v.BULWARK_HIBP_TIMEOUT as number,
        url: v.BULWARK_HIBP_URL as string,
      },
    },
    lockout: {
      threshold: v.BULWARK_LOCKOUT_THRESHOLD as number,
      windowMs: v.BULWARK_LOCKOUT_WINDOW as number,
      baseMs: v.BULWARK_LOCKOUT_BASE as number,
      maxMs: v.BULWARK_LOCKOUT_MAX as number,
      permanentAfter: v.BULWARK_LOCKOUT_PERMANENT_AFTER as number,
    },
    rateLimit: {
      enabled: v.BULWARK_RATE_LIMIT === 'on',
      anonPerMin: v.BULWARK_RATE_LIMIT_ANON as number,
      userPerMin: v.BULWARK_RATE_LIMIT_USER as number,
      moderatorPerMin: v.BULWARK_RATE_LIMIT_MODERATOR as number,
      adminPerMin: v.BULWARK_RATE_LIMIT_ADMIN as number,
      penaltyMaxMs: v.BULWARK_RATE_LIMIT_PENALTY_MAX as number,
      penaltyDecayMs: v.BULWARK_RATE_LIMIT_PENALTY_DECAY as number,
      allowlist: v.BULWARK_RATE_LIMIT_ALLOWLIST as string[],
      routes: routeLimits,
      maxKeys: v.BULWARK_RATE_LIMIT_MAX_KEYS as number,
    },
    redis: { timeoutMs: v.BULWARK_REDIS_TIMEOUT as number, prefix: v.BULWARK_REDIS_PREFIX as string },
    cache: { maxEntries: v.BULWARK_CACHE_MAX_ENTRIES as number, ttlMs: v.BULWARK_CACHE_TTL as number },
    totp: {
      issuer: v.BULWARK_TOTP_ISSUER as string,
      algorithm: v.BULWARK_TOTP_ALGORITHM as 'SHA1' | 'SHA256' | 'SHA512',
      digits: Number(v.BULWARK_TOTP_DIGITS) as 6 | 8,
      window: v.BULWARK_TOTP_WINDOW as number,
    },
    auditDenials: { perSource: v.BULWARK_AUDIT_DENIALS_PER_SOURCE as number, perType: v.BULWARK_AUDIT_DENIALS_PER_TYPE as number },
    db: { busyTimeoutMs: v.BULWARK_DB_BUSY_TIMEOUT as number, busyRetryMs: v.BULWARK_DB_BUSY_RETRY as number, checkpoint: v.BULWARK_DB_CHECKPOINT as 'background' | 'inline', mmapMib: v.BULWARK_DB_MMAP_MIB as number },
    pg,
    retention: {
      securityEventsMs: v.BULWARK_RETENTION_SECURITY_EVENTS as number,
      sessionsMs: v.BULWARK_RETENTION_SESSIONS as number,
      mailMs: v.BULWARK_RETENTION_MAIL as number,
      tokensMs: v.BULWARK_RETENTION_TOKENS as number,
      intervalMs: v.BULWARK_PRUNE_INTERVAL as number,
    },
  }
  if (config.env === 'production') {
    const prod = productionProblems(config)
    if (prod.length > 0) throw new ConfigError(prod)
  }
  return config
}

/** A URL with its password (if any) replaced by `********`; an unparsable value is not shown at all. */
export function maskUrlPassword(raw: string): string {
  try {
    const u = new URL(raw)
    if (u.password) u.password = '********'
    return u.toString()
  } catch {
    return '******** (not a valid URL)'
  }
}

/** The effective configuration as `NAME=value` lines, secrets masked. */
export function describeConfig(env: Raw = process.env): string[] {
  const ignored: string[] = []
  const profile = profileOf(env)
  return (SETTINGS as readonly Setting[]).map((s) => {
    const { value } = readRaw(env, s.env, ignored)
    const raw = value ?? defaultFor(s, profile)
    const unset = s.env === 'BULWARK_PUBLIC_URL' ? '(unset: follows the listening address)' : '(unset)'
    const shown = raw === undefined ? unset : s.secret ? '******** (set)' : s.maskPassword ? maskUrlPassword(raw) : raw
    return `${s.env}=${shown}`
  })
}

/** A configuration for tests: in-memory database, fixed secret, quiet logs; override what you need. */
export function testConfig(overrides: Raw = {}): Config {
  return loadConfig({
    BULWARK_ENV: 'test',
    BULWARK_SECRET: 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz',
    BULWARK_DB_PATH: ':memory:',
    BULWARK_DATA_DIR: '/nonexistent-bulwark-test-dir',
    BULWARK_LOG_LEVEL: 'silent',
    BULWARK_ARGON2_MEMORY_KIB: '1024',
    BULWARK_ARGON2_TIME: '1',
    // One process runs every in-process test: scoring on its thread loads the dictionaries once, where a
    // worker per test app would load them for each. The worker has its own tests and the binary suite.
    BULWARK_PASSWORD_SCORER: 'inline',
    ...overrides,
  })
}
