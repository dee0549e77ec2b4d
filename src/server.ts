/**
 * Runs the app on a real socket: Bun.serve with explicit limits (body size, idle timeout, no
 * SO_REUSEPORT so a second process on the same port fails loudly), and a graceful drain on SIGTERM/SIGINT.
 */
import type { Server } from 'bun'
import { buildDeps, createApp, createHandler, type AppDeps } from './app'
import type { Config } from './config'
import { configWarnings, followListener } from './config'
import { startManagement } from './modules/metrics/management'
import { securityHeaders } from './plugins/security-headers'
import { VERSION } from './version'

export interface Running {
  server: Server<undefined>
  deps: AppDeps
  url: string
  stop(): Promise<void>
}

export async function startServer(config: Config, given?: AppDeps): Promise<Running> {
  const deps = given ?? (await buildDeps(config, { defaultMetrics: true }))
  // The app is built once the port is known (below), so an unset BULWARK_PUBLIC_URL can follow it;
  // Bun.serve calls fetch only after this function has returned.
  let handle: ReturnType<typeof createHandler> | undefined
  let inFlight = 0
  const server = Bun.serve({
    hostname: config.host,
    port: config.port,
    reusePort: false,
    development: false,
    // Uploads may be larger than JSON bodies; each route checks its own limit (problem+json 413).
    maxRequestBodySize: Math.max(config.bodyLimit, config.uploads.maxBytes) + 64 * 1024,
    idleTimeout: Math.ceil(config.idleTimeoutMs / 1000),
    fetch: async (request, srv) => {
      inFlight++
      try {
        const response = await handle!(request, srv.requestIP(request)?.address)
        // Answer a change (logout, revocation, role change) only once Redis has its invalidation event.
        const published = deps.relay?.published()
        if (published) await published
        return response
      } finally {
        inFlight--
      }
    },
    error: (err) => {
      deps.logger.error({ err }, 'unhandled server error')
      return new Response(JSON.stringify({ type: 'urn:bulwark:problem:internal', title: 'Internal Server Error', status: 500, code: 'internal', detail: 'An unexpected error occurred.' }), {
        status: 500,
        headers: { ...securityHeaders(config), 'content-type': 'application/problem+json; charset=utf-8' },
      })
    },
  })
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${server.port}`
  followListener(config, server.port ?? config.port)
  try {
    handle = createHandler(createApp(deps), deps)
  } catch (e) {
    server.stop(true)
    throw e
  }
  const management = startManagement(deps)
  for (const w of configWarnings(config)) deps.logger.warn(w)
  await deps.mailWorker.start()
  await deps.pruner.start()
  await deps.webhookWorker.start()
  deps.logger.info({ url, publicUrl: config.publicUrl, managementUrl: management?.url, version: VERSION, env: config.env }, 'bulwark listening')
  // The build starts the binary with JavaScriptCore's tier-up thresholds ×16 (`--compile-jit-policy 16`), so
  // run-once start-up code stays in the interpreter instead of queueing JIT work on the same core: start-up
  // to ready 431-458 -> 300-313 ms on the slow machine of stop 21 (README, Performance, Round 5). From here
  // on, the normal policy.
  Bun.unsafe.setJITPolicy(1)

  let stopping: Promise<void> | undefined
  const stop = () =>
    (stopping ??= (async () => {
      deps.logger.info({ inFlight }, 'shutting down: draining in-flight requests')
      void management?.server.stop(true)
      const drained = server.stop(false)
      const deadline = Date.now() + config.shutdownGraceMs
      while (inFlight > 0 && Date.now() < deadline) await Bun.sleep(20)
      if (inFlight > 0) {
        deps.logger.warn({ inFlight }, 'grace period over: closing remaining connections')
        server.stop(true)
      }
      await Promise.race([drained, Bun.sleep(100)])
      // A mail being sent may finish within the grace; one cut off stays pending and goes out after a restart.
      let graceTimer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([await deps.mailWorker.stop(), new Promise((r) => (graceTimer = setTimeout(r, config.shutdownGraceMs)))])
      clearTimeout(graceTimer)
      await deps.pruner.stop()
      // An attempt cut off here is retried after a restart (its lease ends), with the same webhook-id.
      await Promise.race([await deps.webhookWorker.stop(), Bun.sleep(config.shutdownGraceMs)])
      // Awaited: the store's close stops the checkpoint worker, then copies the log into the database file.
      await Promise.race([deps.close(), Bun.sleep(5000)])
      deps.logger.info('stopped')
      // The log is buffered: wait (briefly) until the last lines are written before the process exits.
      await Promise.race([new Promise<void>((r) => deps.logger.flush(() => r())), Bun.sleep(1000)])
    })())
  return { server, deps, url, stop }
}
