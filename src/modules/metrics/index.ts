/** GET /metrics in the Prometheus text format; needs BULWARK_METRICS_TOKEN as a bearer token when it is set. */
import { Elysia, t } from 'elysia'
import { safeEqual } from '../../lib/crypto'
import { unauthorized } from '../../lib/errors'
import type { Metrics } from '../../lib/metrics'
import { errors } from '../../lib/schemas'

export function metricsController(metrics: Metrics, token: string | undefined) {
  return new Elysia({ name: 'metrics' }).get(
    '/metrics',
    async ({ request }) => {
      if (token) {
        const m = /^Bearer (.+)$/.exec(request.headers.get('authorization') ?? '')
        if (!m || !safeEqual(m[1]!, token)) throw unauthorized('unauthorized', 'The metrics token is required.')
      }
      return new Response(await metrics.render(), { headers: { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' } })
    },
    {
      response: { 200: t.String({ description: 'Prometheus text exposition format' }), ...errors(401) },
      detail: { tags: ['health'], summary: 'Prometheus metrics (bearer BULWARK_METRICS_TOKEN when set)', security: [{ bearer: [] }] },
    },
  )
}
