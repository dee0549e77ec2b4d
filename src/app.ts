/**
 * The composition root: the one place that builds dependencies and wires plugins and controllers.
 * Plugin order follows ARCHITECTURE.md: request context → (security headers → CORS → rate limit → CSRF)
 * → body parsing → routes → error handler.
 */
import { Elysia } from 'elysia'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Config } from './config'
import { openDatabase } from './db/client'
import type { CoreDeps } from './deps'
import { systemClock, type Clock } from './lib/clock'
import { deriveKeys, randomToken } from './lib/crypto'
import { createLogger, type Logger } from './lib/logger'
import { Redis } from './lib/redis'
import { AuditService } from './modules/audit/service'
import { healthController } from './modules/health'
import { databaseCheck, HealthService } from './modules/health/service'
import { LockoutService } from './modules/lockout/service'
import { RateLimitService } from './modules/rate-limit/service'
import { bodyParser } from './plugins/body-parser'
import { docs } from './plugins/docs'
import { errorHandler } from './plugins/error-handler'
import { rateLimit, type RateLimitIdentityFn } from './plugins/rate-limit'
import { contextOf, requestContext, setPeer } from './plugins/request-context'

export interface AppDeps extends CoreDeps {
  health: HealthService
  audit: AuditService
  /** Shared Redis connection when BULWARK_REDIS_URL is set (short command timeouts, no offline queue). */
  redis?: Redis
  rateLimit: RateLimitService
  lockout: LockoutService
  /** Who is calling, for per-user rate limits; set by the auth layer (absent: everyone is anonymous). */
  rateLimitIdentity?: RateLimitIdentityFn
  /** Closes everything the deps opened (database, timers). */
  close(): void
}

export interface BuildOptions {
  clock?: Clock
  logger?: Logger
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
  mkdirSync(config.dataDir, { recursive: true })
  const secret = randomToken(48)
  writeFileSync(file, `${secret}\n`, { mode: 0o600 })
  chmodSync(file, 0o600)
  return secret
}

/** Opens the database and builds every service. */
export function buildDeps(config: Config, opts: BuildOptions = {}): AppDeps {
  const logger = opts.logger ?? createLogger(config.logLevel)
  const handle = openDatabase(config.dbPath)
  const clock = opts.clock ?? systemClock
  const keys = deriveKeys(resolveSecret(config))
  const core: CoreDeps = { config, db: handle.db, sqlite: handle.sqlite, clock, logger, keys }
  const health = new HealthService()
  health.add(databaseCheck(handle.sqlite))
  const audit = new AuditService(core)
  const redis = config.redisUrl ? new Redis(config.redisUrl, config.redis.timeoutMs) : undefined
  if (redis) health.add({ name: 'redis', required: false, run: async () => void (await redis.send('PING', [])) })
  const rateLimiter = new RateLimitService({ ...core, audit, redis })
  const lockout = new LockoutService({ ...core, audit })
  return {
    ...core,
    health,
    audit,
    redis,
    rateLimit: rateLimiter,
    lockout,
    close: () => {
      redis?.close()
      handle.close()
    },
  }
}

const UPLOAD_PATHS = new Set(['/v1/files', '/v1/me/avatar'])

/** Builds the Elysia application on the given dependencies. */
export function createApp(deps: AppDeps) {
  const { config, logger } = deps
  return new Elysia({ name: 'bulwark', normalize: false })
    .use(requestContext(config.trustProxy))
    .use(errorHandler(logger))
    .use(rateLimit(deps.rateLimit, deps.rateLimitIdentity))
    .use(bodyParser({ json: config.bodyLimit, upload: config.uploads.maxBytes, uploadPaths: (p) => UPLOAD_PATHS.has(p) }))
    .use(docs())
    .use(healthController(deps.health))
}

export type App = ReturnType<typeof createApp>

/**
 * The fetch handler around the app: gives app.handle() the socket peer, then writes one access-log
 * line per request (method, route, status, duration, request id, user id), off the response path.
 */
export function createHandler(app: { handle(request: Request): Promise<Response> }, deps: Pick<AppDeps, 'logger'>) {
  const log = deps.logger
  return async (request: Request, peer?: string): Promise<Response> => {
    if (peer) setPeer(request, peer)
    const response = await app.handle(request)
    const ctx = contextOf(request)
    const level = response.status >= 500 ? 'error' : 'info'
    if (log.isLevelEnabled(level)) {
      const url = new URL(request.url)
      log[level]({
        msg: 'request',
        method: request.method,
        path: url.pathname,
        route: ctx.route,
        status: response.status,
        durationMs: Math.round((performance.now() - ctx.start) * 100) / 100,
        requestId: ctx.requestId,
        userId: ctx.userId,
        ip: ctx.ip,
      })
    }
    return response
  }
}
