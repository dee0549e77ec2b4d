/**
 * The composition root: the one place that builds dependencies and wires plugins and controllers.
 * Plugin order follows ARCHITECTURE.md: request context → (security headers → CORS → rate limit → CSRF)
 * → body parsing → routes → error handler.
 */
import { Elysia } from 'elysia'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Config } from './config'
import { openStore, setBusyTimeout, type Store } from './db/client'
import type { CoreDeps } from './deps'
import { systemClock, type Clock } from './lib/clock'
import { randomToken } from './lib/crypto'
import { asyncLruCaches, omitting, redisCaches, type AsyncCacheFactory } from './lib/redis-cache'
import type { CacheStats } from './lib/cache'
import { Invalidation } from './lib/invalidation'
import { InvalidationRelay } from './lib/invalidation-relay'
import { accessLogger, createLogger, droppedLines, type Logger } from './lib/logger'
import { Metrics } from './lib/metrics'
import { closeIfBodyUnread } from './lib/read-body'
import { metricsController } from './modules/metrics'
import { attachAlerts } from './modules/alerts/service'
import { webhooksController } from './modules/webhooks'
import { WebhookService, WebhookWorker } from './modules/webhooks/service'
import { MailWorker, OutboxMailer, type Mailer } from './modules/mail/outbox'
import { PasswordHasher } from './lib/password'
import { PasswordPolicy } from './lib/password-policy'
import { PasswordScorer } from './lib/strength'
import { PasswordHistoryStore } from './modules/auth/password-history'
import { fallbackOrigin, pathOf, withUsableUrl } from './lib/request-url'
import { Redis } from './lib/redis'
import { AuditService } from './modules/audit/service'
import { DenialRecorder } from './modules/audit/denials'
import { authController } from './modules/auth'
import { AuthService, type LoginHooks } from './modules/auth/service'
import { loginFlow, mfaLock } from './modules/auth/login-flow'
import { KeyService } from './modules/keys/service'
import { assertSecretOpens, effectiveKeys } from './modules/keys/secret'
import { meController } from './modules/me'
import { meProfile } from './modules/me/store'
import { SessionService } from './modules/sessions/service'
import { Authenticator, authPlugin } from './plugins/auth'
import { rbacController } from './modules/rbac'
import { usersController } from './modules/users'
import { RbacService } from './modules/rbac/service'
import { AppPermissionService } from './modules/rbac/app-permissions'
import { AuthzCheckService } from './modules/rbac/authz-check'
import { isWellFormedKey } from './modules/apikeys/format'
import { ApiKeyService } from './modules/apikeys/service'
import { apiKeysController } from './modules/apikeys'
import { PermissionRegistry } from './lib/permissions'
import { UsersAdminService } from './modules/users/admin-service'
import { healthController } from './modules/health'
import { rootController } from './modules/root'
import { databaseCheck, HealthService } from './modules/health/service'
import { LockoutService } from './modules/lockout/service'
import { mfaController } from './modules/mfa'
import { auditController } from './modules/audit'
import { filesController } from './modules/files'
import { FilesService } from './modules/files/service'
import { buildMfaServices, type MfaServices } from './modules/mfa/services'
import { RateLimitService } from './modules/rate-limit/service'
import { Pruner } from './modules/retention/service'
import { bodyParser } from './plugins/body-parser'
import { compressResponse } from './plugins/compression'
import { corsPlugin } from './plugins/cors'
import { csrfPlugin } from './plugins/csrf'
import { strictInput, type RouteInfo } from './plugins/strict-input'
import { docs } from './plugins/docs'
import { errorHandler } from './plugins/error-handler'
import { rateLimit, type RateLimitIdentityFn } from './plugins/rate-limit'
import { contextOf, requestContext, setPeer } from './plugins/request-context'
import { applySecurityHeaders, securityHeaders, securityHeadersPlugin } from './plugins/security-headers'
import { retryWhenBusy } from './plugins/storage-retry'
import { classifyStorageError } from './lib/storage-errors'
import { clientsController } from './modules/clients'
import { ClientsService } from './modules/clients/service'
import { oauthController } from './modules/oauth'
import { OAuthService } from './modules/oauth/service'
import { tokenClaims } from './modules/oauth/claims'

export interface AppDeps extends CoreDeps {
  health: HealthService
  audit: AuditService
  /** Security events for refused requests (401/403/422), bounded per source and type. */
  denials: DenialRecorder
  signer: KeyService
  sessions: SessionService
  hooks: LoginHooks
  auth: AuthService
  authn: Authenticator
  metrics: Metrics
  files: FilesService
  mfa: MfaServices
  /** Webhook endpoints and their outbox (audit events → deliveries); `webhookWorker` delivers (started by the server, driven by tests). */
  webhooks: WebhookService
  webhookWorker: WebhookWorker
  /** Cache invalidation events (user, role, session changes); caches and the auth plugin listen here. */
  invalidation: Invalidation
  rbac: RbacService
  /** OAuth clients (service identities) and the OAuth endpoints; `oauth.introspectors`/`revokers` take more token kinds. */
  clients: ClientsService
  oauth: OAuthService
  /** Application permissions (POST /v1/permissions), in the registry `rbac` matches against. */
  appPermissions: AppPermissionService
  apiKeys: ApiKeyService
  authz: AuthzCheckService
  /** RFC 7662 / RFC 7009 hooks for the OAuth endpoints: an API key's introspection answer, and its revocation. */
  introspectApiKey(token: string): ReturnType<ApiKeyService['introspect']>
  revokeApiKey(token: string): Promise<boolean>
  usersAdmin: UsersAdminService
  hasher: PasswordHasher
  passwordPolicy: PasswordPolicy
  /** Queues mail in the outbox; `mailWorker` delivers it (started by the server, driven by tests). */
  mailer: Mailer
  mailWorker: MailWorker
  /** Deletes rows past their retention in small batches (started by the server, driven by tests). */
  pruner: Pruner
  /** Shared Redis connection when BULWARK_REDIS_URL is set (short command timeouts, no offline queue). */
  redis?: Redis
  /** Carries cache invalidations to other instances (with Redis); `relayReady` settles once subscribed. */
  relay?: InvalidationRelay
  relayReady: Promise<void>
  rateLimit: RateLimitService
  lockout: LockoutService
  /** Who is calling, for per-user rate limits; set by the auth layer (absent: everyone is anonymous). */
  rateLimitIdentity?: RateLimitIdentityFn
  /** The database the deps run on (engine, and on SQLite the raw connection for readiness and busy retries). */
  storage: Store
  /** Closes everything the deps opened (database, timers). */
  close(): Promise<void>
}

export interface BuildOptions {
  clock?: Clock
  logger?: Logger
  /** Process-wide default metrics (CPU, memory, event loop); on for the real server. */
  defaultMetrics?: boolean
}

/**
 * The master secret: from the configuration, or (outside production) generated once into the data
 * folder and reused, so development restarts keep sessions and encrypted secrets readable.
 */
export function resolveSecret(config: Config): string {
  if (config.secret) return config.secret
  if (config.env === 'production') throw new Error('BULWARK_SECRET is required in production')
  if (config.dbPath === ':memory:') return randomToken(48)
  const file = join(config.dataDir, 'secret.key')
  if (existsSync(file)) return readFileSync(file, 'utf8').trim()
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
  const secret = randomToken(48)
  writeFileSync(file, `${secret}\n`, { mode: 0o600 })
  chmodSync(file, 0o600)
  return secret
}

/** Opens the database and builds every service. */
export async function buildDeps(config: Config, opts: BuildOptions = {}): Promise<AppDeps> {
  const logger = opts.logger ?? createLogger(config.logLevel)
  const secret = resolveSecret(config)
  // A different secret would make a new signing key and break every TOTP user: refuse before any write.
  if (!config.pg) await assertSecretOpens(config.dbPath, secret)
  const store = await openStore(config, {
    checkpointWorker: config.db.checkpoint === 'background',
    mmapBytes: config.db.mmapMib * 1024 * 1024,
    onCheckpointFailure: (reason) => logger.warn({ reason }, 'the checkpoint worker stopped; SQLite checkpoints inline in commits again'),
  })
  const clock = opts.clock ?? systemClock
  let keys: Awaited<ReturnType<typeof effectiveKeys>>
  try {
    keys = await effectiveKeys(store.db, secret)
  } catch (err) {
    await store.close()
    throw err
  }
  const core: CoreDeps = { config, db: store.db, clock, logger, keys }
  const health = new HealthService()
  health.add(databaseCheck(store, clock))
  const audit = new AuditService({ ...core, storage: store })
  const redis = config.redisUrl ? new Redis(config.redisUrl, config.redis.timeoutMs) : undefined
  if (redis) health.add({ name: 'redis', required: false, run: async () => void (await redis.send('PING', [])) })
  const rateLimiter = new RateLimitService({ ...core, audit, redis })
  const metrics = new Metrics({ defaultMetrics: opts.defaultMetrics })
  audit.onEvent((e) => metrics.securityEvents.inc({ type: e.type, outcome: e.outcome }))
  const denials = new DenialRecorder({ audit, clock, limits: config.auditDenials, registry: metrics.registry })
  const webhooks = new WebhookService({ ...core, audit })
  webhooks.attach(audit)
  const webhookWorker = new WebhookWorker(webhooks, core)
  attachAlerts(config, webhooks, logger)
  const invalidation = new Invalidation()
  // Every cache comes from this one factory on the injected clock. With Redis: a small local LRU in front of
  // Redis, shared by every instance, invalidated over its own pub/sub channel (src/lib/redis-cache.ts).
  const sharedCaches = redis
    ? redisCaches(redis, {
        url: config.redisUrl!,
        prefix: config.redis.prefix,
        timeoutMs: config.redis.timeoutMs,
        ...config.cache,
        clock,
        logger,
        // A user entry's memo is built against this instance's role generation: never share it.
        codecs: { 'rbac-users': omitting(['memo']) },
      })
    : undefined
  const cacheFactory: AsyncCacheFactory = sharedCaches ?? asyncLruCaches({ ...config.cache, clock })
  const registry = new PermissionRegistry()
  const rbac = new RbacService({ ...core, audit, invalidation, registry, caches: cacheFactory })
  const appPermissions = new AppPermissionService({ db: store.db, clock, audit, invalidation, rbac, registry })
  await appPermissions.init()
  const apiKeys = new ApiKeyService({ db: store.db, clock, tokenHashKey: keys.tokenHash, audit, registry, access: (id) => rbac.effective(id) })
  const usersAdmin = new UsersAdminService({ ...core, audit, invalidation, rbac })
  const signer = new KeyService(core)
  await signer.init()
  signer.onRotated = (r) => audit.record({ type: 'key_rotated', outcome: 'success', details: { kid: r.kid, previous: r.previous, scheduled: true } })
  const sessions = new SessionService({ ...core, audit, caches: cacheFactory })
  const hasher = new PasswordHasher(config.password)
  const scorer = new PasswordScorer({
    // Next to src/index.ts in the sources and at the root of the compiled binary (a second entry point of the build).
    workerUrl: config.password.scorer === 'worker' ? new URL('./strength-worker.ts', import.meta.url).href : undefined,
    idleMs: config.password.scorerIdleMs,
    logger,
  })
  const passwordPolicy = new PasswordPolicy({ config, hasher, logger, history: new PasswordHistoryStore(store.db), clock, scorer })
  metrics.gauge('bulwark_password_scorer_loaded', '1 while the password scorer worker runs and holds the zxcvbn dictionaries, 0 once it ended after BULWARK_PASSWORD_SCORER_IDLE', [], () => [{ labels: {}, value: scorer.loaded ? 1 : 0 }])
  metrics.counter('bulwark_password_scorer_loads_total', 'Password scorer workers started (each loads the dictionaries once)', [], () => [{ labels: {}, value: scorer.loads }])
  metrics.counter('bulwark_password_scorer_fallbacks_total', 'Password scores the worker owed that were computed on the server thread instead (it could not start, crashed, could not score, or answered too late)', [], () => [{ labels: {}, value: scorer.fallbacks }])
  metrics.gauge('bulwark_password_scorer_inline', '1 once passwords are scored on the server thread (BULWARK_PASSWORD_SCORER=inline, or after the worker failed repeatedly)', [], () => [{ labels: {}, value: scorer.mode === 'inline' ? 1 : 0 }])
  const mailWorker = new MailWorker(core)
  const mailer = new OutboxMailer(core, () => mailWorker.nudge())
  const lockout = new LockoutService({ ...core, audit, caches: cacheFactory })
  const files = new FilesService({ ...core, audit })
  if (files.scanning) health.add({ name: 'scanner', required: false, run: async () => ({ status: (await files.ping()) ? 'ok' : 'down' }) })
  // The in-process caches have no remote side to fail; the check proves they answer and reports their size.
  health.add(sharedCaches?.check ?? { name: 'cache', required: false, run: () => ({ status: 'ok', detail: `${rbac.stats().effective.size} users cached` }) })
  const checkpointer = store.checkpointer
  if (checkpointer) {
    metrics.counter('bulwark_sqlite_checkpoints_total', 'Write-ahead log checkpoints run by the background checkpointer (BULWARK_DB_CHECKPOINT=background)', [], () => [{ labels: {}, value: checkpointer.checkpoints }])
    metrics.gauge('bulwark_sqlite_checkpoint_background', '1 while the background checkpointer runs, 0 once SQLite checkpoints inline in commits again', [], () => [{ labels: {}, value: checkpointer.state === 'background' ? 1 : 0 }])
  }
  metrics.counter('bulwark_log_lines_dropped_total', 'Log lines lost because the log output failed or fell behind', [], () => [{ labels: {}, value: droppedLines(logger) }])
  const mfa = buildMfaServices({ ...core, audit }, mfaLock(lockout))
  const hooks: LoginHooks = loginFlow({ config, clock, mailer, lockout, mfa, rbac })
  invalidation.on((e) => {
    // A user-level change (disabled, deleted, unlocked) may have changed what these caches hold.
    if (e.kind === 'session') void sessions.invalidate(e.id)
    else if (e.kind === 'lockout') void lockout.forget(e.id)
    else if (e.kind === 'user') {
      void sessions.invalidate()
      void lockout.forget(e.id)
    }
  })
  sessions.onChanged = (id) => invalidation.emit({ kind: 'session', id })
  lockout.onChanged = (id) => invalidation.emit({ kind: 'lockout', id })
  webhooks.onEndpointsChanged = () => invalidation.emit({ kind: 'webhooks', id: '*' })
  invalidation.on((e) => {
    if (e.kind === 'webhooks') webhooks.forgetEndpoints()
  })
  // Several instances: the same events travel through Redis pub/sub to every other instance's caches.
  // After a lost subscription the relay drops the local caches (events may have been missed meanwhile).
  const relay = config.redisUrl
    ? new InvalidationRelay(invalidation, config.redisUrl, config.redis.prefix, logger, {
        timeoutMs: config.redis.timeoutMs,
        onResync: () => {
          void sessions.invalidate()
          void rbac.clearCaches()
          usersAdmin.clearViews()
          webhooks.forgetEndpoints()
          clients.clearCache()
          void appPermissions.refresh().catch(() => {})
        },
      })
    : undefined
  if (relay) health.add({ name: 'relay', required: false, run: () => relay.status() })
  const relayReady = Promise.all([relay?.start(), sharedCaches?.ready]).then(() => {})
  const auth = new AuthService({ ...core, audit, sessions, signer, hasher, policy: passwordPolicy, mailer, hooks, rbac })
  signer.userClaims = async (id) => tokenClaims(config, await rbac.effective(id))
  const clients = new ClientsService({ ...core, audit, rbac, invalidation })
  const oauth = new OAuthService({ config, clock, signer, sessions, clients, userAccess: (id) => rbac.effective(id) })
  // API keys are one more token kind for RFC 7662 introspection and RFC 7009 revocation.
  oauth.introspectors.push({ kind: 'api_key', introspect: async (token) => (isWellFormedKey(token) ? await apiKeys.introspect(token) : undefined) })
  oauth.revokers.push({ kind: 'api_key', revoke: (token) => apiKeys.revokeByToken(token) })
  const authz = new AuthzCheckService({ rbac, signer, sessions, apiKeys })
  // A service client's token as the subject of POST /v1/authz/check: what the client holds, narrowed to the token's scope.
  authz.resolvers.push(async (token) => {
    let claims
    try {
      claims = await signer.verifyClient(token)
    } catch {
      return undefined // not a client token: the user-token and API-key paths decide
    }
    const access = await clients.access(claims.client_id)
    if (!access || access.status !== 'active') return { invalid: 'invalid token' }
    const scope = new Set(claims.scope.split(' '))
    return { clientId: claims.client_id, permissions: access.permissions.filter((p) => scope.has(p)), kind: 'client' as const }
  })
  const authn = new Authenticator({ signer, sessions, clock, access: (id) => rbac.effective(id), clientAccess: (id) => clients.access(id), apiKeys })
  // Every in-process cache (with Redis: its local tier) by name; each reports the bound it enforces.
  const cacheList: { cache: string; stats: () => CacheStats }[] = [
    { cache: 'effective', stats: () => rbac.stats().effective },
    { cache: 'roles', stats: () => rbac.stats().roles },
    { cache: 'held', stats: () => rbac.stats().held },
    { cache: 'user_views', stats: () => usersAdmin.viewStats() },
    { cache: 'sessions', stats: () => sessions.cacheStats() },
    { cache: 'lockouts', stats: () => lockout.cacheStats() },
    { cache: 'clients', stats: () => clients.cacheStats() },
  ]
  const tokenCache = authn.tokens
  if (tokenCache) cacheList.push({ cache: 'tokens', stats: () => tokenCache.stats() })
  const cacheStats = (kind: 'hits' | 'misses' | 'size' | 'max') => () => cacheList.map((c) => ({ labels: { cache: c.cache }, value: c.stats()[kind] }))
  metrics.counter('bulwark_cache_hits_total', 'In-process cache hits', ['cache'], cacheStats('hits'))
  metrics.counter('bulwark_cache_misses_total', 'In-process cache misses', ['cache'], cacheStats('misses'))
  metrics.gauge('bulwark_cache_entries', 'In-process cache entries', ['cache'], cacheStats('size'))
  metrics.gauge('bulwark_cache_max_entries', 'The most entries each in-process cache holds', ['cache'], cacheStats('max'))
  // Per-user rate limits: the same memoised token check the route will use, so the token is verified once.
  const rateLimitIdentity = async (request: Request) => {
    if (!request.headers.get('authorization')) return undefined
    const p = await authn.authenticateAny(request)
    return { userId: p.userId, level: p.level }
  }
  return {
    ...core,
    rateLimitIdentity,
    health,
    audit,
    denials,
    signer,
    sessions,
    hooks,
    auth,
    authn,
    files,
    mfa,
    metrics,
    webhooks,
    webhookWorker,
    invalidation,
    rbac,
    clients,
    oauth,
    appPermissions,
    apiKeys,
    authz,
    introspectApiKey: (token) => apiKeys.introspect(token),
    revokeApiKey: (token) => apiKeys.revokeByToken(token),
    usersAdmin,
    hasher,
    passwordPolicy,
    mailer,
    mailWorker,
    pruner: new Pruner({ ...core, storage: store }),
    redis,
    relay,
    relayReady,
    rateLimit: rateLimiter,
    lockout,
    storage: store,
    close: async () => {
      scorer.close()
      await relay?.close()
      redis?.close()
      await store.close()
    },
  }
}

/** First-start work: the first owner from BULWARK_ADMIN_EMAIL/BULWARK_ADMIN_PASSWORD on an empty database. */
export async function bootstrap(deps: AppDeps): Promise<void> {
  const { email, password } = deps.config.admin
  if (email && password && (await deps.auth.userCount()) === 0) {
    // A first start may meet another process's write lock: wait for it without blocking requests, then create.
    for (let waited = 0; ; waited += 200) {
      try {
        const owner = await deps.auth.createOwner(email, password)
        deps.logger.info({ userId: owner.id, email: owner.email }, 'created the first owner from BULWARK_ADMIN_EMAIL')
        return
      } catch (e) {
        if (classifyStorageError(e) !== 'busy' || waited >= 60_000) throw e
        await Bun.sleep(200)
      }
    }
  }
}

const UPLOAD_PATHS = new Set(['/v1/files', '/v1/me/avatar'])
/** The OAuth endpoints take form bodies only (RFC 6749 §4.4.2, RFC 7662 §2.1, RFC 7009 §2.1). */
const OAUTH_FORM_PATHS = new Set(['/oauth/token', '/oauth/introspect', '/oauth/revoke'])

/** Builds the Elysia application on the given dependencies. */
export function createApp(deps: AppDeps) {
  const { config, logger } = deps
  const routes: { all: () => readonly RouteInfo[] } = { all: () => [] }
  const app = new Elysia({ name: 'bulwark', normalize: false })
    .use(requestContext(config.trustProxy))
    .use(securityHeadersPlugin(config))
    .use(corsPlugin(config.corsOrigins))
    .use(errorHandler(logger, deps.denials.observe))
    .use(strictInput(() => routes.all()))
    .use(rateLimit(deps.rateLimit, deps.rateLimitIdentity))
    .use(csrfPlugin(deps))
    .use(bodyParser({ json: config.bodyLimit, upload: config.uploads.maxBytes, uploadPaths: (p) => UPLOAD_PATHS.has(p), formPaths: (p) => OAUTH_FORM_PATHS.has(p), timeoutMs: config.bodyTimeoutMs }))
    .use(docs())
    .use(rootController(config))
    .use(healthController(deps.health))
    // With BULWARK_MANAGEMENT_PORT, /metrics is served only by the management listener (src/server.ts).
    .use(config.management.port === undefined ? metricsController(deps.metrics, config.metricsToken) : new Elysia({ name: 'metrics-off' }))
    .use(authController({ config, auth: deps.auth, sessions: deps.sessions, signer: deps.signer, authn: deps.authn, lockout: deps.lockout, mfa: deps.mfa }))
    .use(
      mfaController(authPlugin(deps.authn), deps.mfa, deps, async (sessionId, method) => {
        // Enrolling proves the new factor in this session (and only this one).
        await deps.sessions.markAuthenticated(sessionId, method)
        await deps.sessions.clearMfaPending(sessionId)
      }),
    )
    .use(config.uploads.enabled ? filesController(authPlugin(deps.authn), deps.files, { cursorKey: deps.keys.cursor }) : new Elysia({ name: 'files-off' }))
    .use(auditController(authPlugin(deps.authn), deps.audit, { cursorKey: deps.keys.cursor, now: () => deps.clock.now() }))
    .use(rbacController(authPlugin(deps.authn), deps.rbac, deps.appPermissions, deps.authz))
    .use(apiKeysController(authPlugin(deps.authn), deps.apiKeys, deps.keys.cursor))
    .use(usersController(authPlugin(deps.authn), deps))
    .use(webhooksController(authPlugin(deps.authn), deps.webhooks, { cursorKey: deps.keys.cursor }))
    .use(clientsController(authPlugin(deps.authn), deps.clients))
    .use(oauthController(deps.oauth))
    .use(meController(authPlugin(deps.authn), { config, cursorKey: deps.keys.cursor, auth: deps.auth, sessions: deps.sessions, audit: deps.audit, profile: (id) => meProfile(deps.db, id), verifyTotp: (id, code) => deps.mfa.totp.verify(id, code), lockout: deps.lockout }))
  routes.all = () => app.routes
  return app
}

export type App = ReturnType<typeof createApp>

/**
 * The fetch handler around the app: gives app.handle() the socket peer, then writes one access-log
 * line per request (method, route, status, duration, request id, user id), off the response path.
 */
export function createHandler(
  app: { handle(request: Request): Promise<Response>; routes?: ReadonlyArray<{ path: string }> },
  deps: Pick<AppDeps, 'logger' | 'config'> & { metrics?: Metrics; storage?: Pick<Store, 'sqlite'> },
) {
  // Start-up and one-shot commands (`admin create`, `keys rotate`) wait up to 5 s for a held lock; once the database
  // serves requests, SQLite's synchronous wait is cut short and requests refused by another process's write lock
  // wait for it without blocking others (src/plugins/storage-retry.ts).
  const sqlite = deps.storage?.sqlite
  if (sqlite) setBusyTimeout(sqlite, deps.config.db.busyTimeoutMs)
  const handleApp = retryWhenBusy((r) => app.handle(r), { sqlite, windowMs: deps.config.db.busyRetryMs, busyTimeoutMs: deps.config.db.busyTimeoutMs, logger: deps.logger })
  // The access line carries only fields built here (no headers, bodies or tokens); it is formatted and
  // written after the response (src/lib/logger.ts accessLogger).
  const access = accessLogger(deps.logger)
  const metrics = deps.metrics
  const secHeaders = securityHeaders(deps.config)
  const origin = fallbackOrigin(deps.config.publicUrl)
  // Requests answered before routing (CORS preflight, CSRF refusal, 429) still get their route pattern.
  const routeOf = metrics?.routeResolver(app.routes ?? [])
  return async (incoming: Request, peer?: string): Promise<Response> => {
    // Every later `new URL(request.url)` and Elysia's router need an absolute URL with a real host.
    const request = withUsableUrl(incoming, origin)
    if (peer) setPeer(request, peer)
    // Security headers again as a backstop (the plugin covers what Elysia builds), then compression,
    // which needs the final Response; see src/plugins/compression.ts for why it lives here.
    const response = closeIfBodyUnread(request, await compressResponse(request, applySecurityHeaders(await handleApp(request, peer), secHeaders)))
    const ctx = contextOf(request)
    ctx.route ??= routeOf?.(request.url)
    metrics?.observeRequest(request.method, ctx.route ?? 'unmatched', response.status, (performance.now() - ctx.start) / 1000)
    access({
      method: request.method,
      path: pathOf(request.url),
      route: ctx.route,
      status: response.status,
      durationMs: Math.round((performance.now() - ctx.start) * 100) / 100,
      requestId: ctx.requestId,
      userId: ctx.userId,
      ip: ctx.ip,
    })
    return response
  }
}
