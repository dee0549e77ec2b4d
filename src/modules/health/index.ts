/** Liveness and readiness (Kubernetes-style probes). Exempt from rate limits and authentication. */
import { Elysia, t } from 'elysia'
import type { HealthService } from './service'

const Check = t.Object({ status: t.Union([t.Literal('ok'), t.Literal('degraded'), t.Literal('down')]), latencyMs: t.Number(), detail: t.Optional(t.String()) })
const Ready = t.Object({ status: t.Union([t.Literal('ok'), t.Literal('degraded'), t.Literal('down')]), checks: t.Record(t.String(), Check) })

export function healthController(health: HealthService) {
  return new Elysia({ name: 'health', prefix: '/health', detail: { tags: ['health'] } })
    .get('/live', () => ({ status: 'ok' as const }), {
      response: { 200: t.Object({ status: t.Literal('ok') }) },
      detail: { summary: 'Liveness: 200 while the process serves' },
    })
    .get(
      '/ready',
      async ({ set }) => {
        const r = await health.ready()
        set.headers['cache-control'] = 'no-store'
        if (r.status === 'down') set.status = 503
        return r
      },
      {
        response: { 200: Ready, 503: Ready },
        detail: { summary: 'Readiness with dependency checks; 503 when a required dependency is down' },
      },
    )
}
