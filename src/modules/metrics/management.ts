/**
 * The management listener (BULWARK_MANAGEMENT_PORT, bound to BULWARK_MANAGEMENT_HOST = 127.0.0.1 by
 * default), like Keycloak's management port: /metrics and /health/* for scrapers and probes, on an address
 * the public listener's clients cannot reach. /metrics is then absent from the main listener; health stays
 * on both (load balancers probe the public port).
 */
import type { Server } from 'bun'
import { Elysia } from 'elysia'
import type { Config } from '../../config'
import type { Metrics } from '../../lib/metrics'
import type { Logger } from '../../lib/logger'
import { errorHandler } from '../../plugins/error-handler'
import { requestContext } from '../../plugins/request-context'
import { healthController } from '../health'
import type { HealthService } from '../health/service'
import { metricsController } from '.'

export function managementApp(deps: { config: Config; metrics: Metrics; health: HealthService; logger: Logger }) {
  return new Elysia({ name: 'management', normalize: false })
    .use(requestContext([]))
    .use(errorHandler(deps.logger))
    .use(healthController(deps.health))
    .use(metricsController(deps.metrics, deps.config.metricsToken))
}

/** Starts the management listener when BULWARK_MANAGEMENT_PORT is set; undefined otherwise. */
export function startManagement(deps: { config: Config; metrics: Metrics; health: HealthService; logger: Logger }): { server: Server<undefined>; url: string } | undefined {
  const { port, host } = deps.config.management
  if (port === undefined) return undefined
  const app = managementApp(deps)
  const serve = () => Bun.serve({
    hostname: host,
    port,
    reusePort: false,
    development: false,
    maxRequestBodySize: 64 * 1024,
    idleTimeout: 10,
    fetch: (request) => app.handle(request),
  })
  let server: Server<undefined>
  try {
    server = serve()
  } catch (e) {
    throw new Error(`management listener (BULWARK_MANAGEMENT_PORT) on ${host}:${port}: ${(e as Error).message}`)
  }
  return { server, url: `http://${host.includes(':') ? `[${host}]` : host}:${server.port}` }
}
