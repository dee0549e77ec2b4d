/**
 * Alert webhooks: BULWARK_ALERT_WEBHOOK_URL is kept as one webhook endpoint (source `config`) subscribed to
 * `security.alert`, the high-severity security events listed in src/modules/webhooks/events.ts. Deliveries
 * go through the same durable outbox, retries, SSRF checks and Standard Webhooks signatures as every other
 * endpoint. The secret is BULWARK_ALERT_WEBHOOK_SECRET when set, else generated on the first start (an
 * admin reads a new one with POST /v1/webhooks/:id/secret). Payloads carry ids, never secrets.
 */
import type { Config } from '../../config'
import type { Logger } from '../../lib/logger'
import type { WebhookService } from '../webhooks/service'

export { ALERT_EVENTS } from '../webhooks/events'

/** Creates or updates the `config` endpoint for BULWARK_ALERT_WEBHOOK_URL; a refused URL is logged, not fatal. */
export function attachAlerts(config: Config, webhooks: WebhookService, logger: Logger): Promise<string | undefined> {
  if (!config.alertWebhookUrl) return Promise.resolve(undefined)
  return webhooks.ensureAlertEndpoint(config.alertWebhookUrl, config.alertWebhookSecret).catch((e: unknown) => {
    logger.error({ err: (e as Error).message }, 'BULWARK_ALERT_WEBHOOK_URL is not usable as a webhook; alerts are not delivered')
    return undefined
  })
}
