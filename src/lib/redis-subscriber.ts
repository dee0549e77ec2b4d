/**
 * One Redis pub/sub subscription that survives a lost connection. Both subscribers of the server use it: the
 * invalidation relay (src/lib/invalidation-relay.ts, domain events) and the shared cache (its own channel).
 *
 * Why not Bun's own reconnect: with Bun 1.4.4 a client that reconnects by itself does not subscribe again
 * (the server counts 0 subscribers) and re-subscribing on the same client registers the listener twice. So
 * the subscriber owns its connection: on `onclose` it drops that client, reports itself unsubscribed and
 * builds a fresh client with backoff (50 ms doubling to 2 s) until it is subscribed again. Messages
 * published meanwhile are lost, so every subscription after a loss (or after failing at start) calls
 * `onResync`, whose job is to drop whatever those messages would have invalidated.
 */
import { RedisClient } from 'bun'
import type { Logger } from './logger'

const BACKOFF_MIN_MS = 50
const BACKOFF_MAX_MS = 2000

export interface SubscriberOptions {
  url: string
  channel: string
  logger: Logger
  /** Called for every message on the channel (a throw is logged, never propagated). */
  onMessage: (message: string) => void
  /** Called after a (re-)subscription that may have missed messages. */
  onResync?: () => void
  /** Connect timeout (ms). */
  timeoutMs?: number
  /** What the logs call this subscription. */
  what?: string
  /** The log lines when the subscription is lost and when it is back (defaults name `what`). */
  messages?: { lost?: string; back?: string; resyncFailed?: string }
}

export class RedisSubscriber {
  private sub: RedisClient | undefined
  private closed = false
  private retry: Timer | undefined
  private backoffMs = BACKOFF_MIN_MS
  private everSubscribed = false
  lastError: string | undefined
  /** Whether the subscription is live now. */
  subscribed = false
  /** Times the subscription was re-established after a loss. */
  resubscriptions = 0

  constructor(private readonly opts: SubscriberOptions) {}

  /** Subscribes; settles after the first attempt (failed or not), retrying in the background. */
  start(): Promise<void> {
    return this.connect()
  }

  private async connect(): Promise<void> {
    if (this.closed) return
    const timeoutMs = Math.max(this.opts.timeoutMs ?? 500, 100)
    const client = new RedisClient(this.opts.url, { autoReconnect: false, maxRetries: 0, enableOfflineQueue: false, connectionTimeout: timeoutMs })
    this.sub = client
    client.onclose = (err) => {
      if (this.sub !== client) return
      this.lost(err?.message ?? 'connection closed')
    }
    try {
      await client.connect()
      await client.subscribe(this.opts.channel, (message: string) => {
        try {
          this.opts.onMessage(message)
        } catch (err) {
          this.opts.logger.error({ err, channel: this.opts.channel }, `${this.what} failed to apply a message`)
        }
      })
      if (this.sub !== client || this.closed) return
      const missed = this.everSubscribed || this.lastError !== undefined
      this.subscribed = true
      this.backoffMs = BACKOFF_MIN_MS
      this.lastError = undefined
      if (this.everSubscribed) this.resubscriptions++
      this.everSubscribed = true
      if (missed) {
        this.opts.logger.info({ channel: this.opts.channel }, this.opts.messages?.back ?? `${this.what} subscribed again; local copies dropped`)
        try {
          this.opts.onResync?.()
        } catch (err) {
          this.opts.logger.error({ err }, this.opts.messages?.resyncFailed ?? `${this.what} failed to drop its local copies after resubscribing`)
        }
      }
    } catch (err) {
      if (this.sub !== client) return
      this.lost(err instanceof Error ? err.message : String(err))
    }
  }

  private get what(): string {
    return this.opts.what ?? 'redis subscriber'
  }

  /** The subscriber connection is gone: report it once, then retry with a fresh client. */
  private lost(reason: string): void {
    const old = this.sub
    this.sub = undefined
    try {
      old?.close()
    } catch {}
    if (this.closed) return
    const wasSubscribed = this.subscribed
    this.subscribed = false
    if (wasSubscribed || this.lastError === undefined) {
      this.opts.logger.warn({ err: reason, channel: this.opts.channel }, this.opts.messages?.lost ?? `${this.what} is not subscribed; retrying`)
    }
    this.lastError = reason
    if (this.retry) return
    const delay = this.backoffMs
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS)
    this.retry = setTimeout(() => {
      this.retry = undefined
      void this.connect()
    }, delay)
    this.retry.unref?.()
  }

  close(): void {
    this.closed = true
    this.subscribed = false
    clearTimeout(this.retry)
    const sub = this.sub
    this.sub = undefined
    try {
      sub?.close()
    } catch {}
  }
}
