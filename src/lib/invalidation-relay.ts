/**
 * Carries invalidation events between instances through Redis pub/sub, so a logout, a revoked session, a
 * disabled user, a role change or a new lock on one instance takes effect on every other instance's
 * caches on their next request (instead of after the cache TTL). Local events are published; received
 * events are re-emitted locally (never re-published).
 *
 * Pub/sub is fire-and-forget: a subscription does not survive a lost connection, and Bun's RedisClient,
 * when it reconnects by itself, does not subscribe again (checked with Bun 1.4.4: `onconnect` fires, the
 * server counts 0 subscribers; re-subscribing on the same client registers the listener twice). So the
 * relay owns its subscriber connection: on `onclose` it drops that client, reports itself unsubscribed
 * (readiness check `relay` is `degraded`), and builds a fresh client with backoff until it is subscribed
 * again. Events published while it was away are lost, so on every re-subscription it calls `onResync`,
 * which drops the local caches: a logout made elsewhere during the outage is refused on the next request.
 */
import { RedisClient } from 'bun'
import type { Invalidation, InvalidationEvent } from './invalidation'
import type { Logger } from './logger'
import { Redis } from './redis'

const KINDS = new Set(['user', 'role', 'session', 'lockout', 'client', 'permissions'])
const BACKOFF_MIN_MS = 50
const BACKOFF_MAX_MS = 2000

export interface RelayOptions {
  /** Called after a re-subscription: events may have been missed, so local caches must be dropped. */
  onResync?: () => void
  /** Connect and command timeout (ms). */
  timeoutMs?: number
}

export class InvalidationRelay {
  readonly instance = crypto.randomUUID()
  private readonly channel: string
  private sub: RedisClient | undefined
  private pub: Redis | undefined
  private replaying = false
  /** PUBLISH commands not yet answered (each settles, never rejects). */
  private readonly pending = new Set<Promise<void>>()
  private unsubscribe: (() => void) | undefined
  private closed = false
  private retry: Timer | undefined
  private backoffMs = BACKOFF_MIN_MS
  private everSubscribed = false
  private lastError: string | undefined
  /** Whether the subscription is live now. */
  subscribed = false
  /** Events received from other instances. */
  received = 0
  /** Times the subscription was re-established after a loss. */
  resubscriptions = 0

  constructor(
    private readonly bus: Invalidation,
    private readonly url: string,
    prefix: string,
    private readonly logger: Logger,
    private readonly opts: RelayOptions = {},
  ) {
    this.channel = `${prefix}invalidation`
  }

  /** Starts publishing local events and subscribes; settles after the first attempt (failed or not). */
  async start(): Promise<void> {
    const timeoutMs = Math.max(this.opts.timeoutMs ?? 500, 100)
    this.pub = new Redis(this.url, timeoutMs)
    this.unsubscribe = this.bus.on((e) => {
      if (this.replaying || this.closed) return
      const p = this.pub!.send('PUBLISH', [this.channel, JSON.stringify({ from: this.instance, kind: e.kind, id: e.id })]).then(
        () => {},
        (err: unknown) => {
          this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not publish a cache invalidation; other instances rely on their TTL')
        },
      )
      this.pending.add(p)
      void p.finally(() => this.pending.delete(p))
    })
    await this.connect()
  }

  /**
   * Settles once every event published so far has been taken by Redis (or has failed or timed out after
   * the Redis timeout); undefined when none is on its way. The server holds a response until then, so a
   * logout's answer leaves only after Redis has queued the event to every subscriber: the client's next
   * request, on any instance, comes after it (without the wait, a request sent straight to another
   * instance usually overtook the event; see test/binary/multi-host.test.ts).
   */
  published(): Promise<void> | undefined {
    if (this.pending.size === 0) return undefined
    return Promise.all(this.pending).then(() => {})
  }

  /** Readiness: `ok` while subscribed, `degraded` (caches fall back to their TTL) while not. */
  status(): { status: 'ok' | 'degraded'; detail?: string } {
    if (this.subscribed) return { status: 'ok' }
    return { status: 'degraded', detail: `not subscribed to invalidations${this.lastError ? ` (${this.lastError.slice(0, 80)})` : ''}; caches rely on their TTL` }
  }

  private async connect(): Promise<void> {
    if (this.closed) return
    const timeoutMs = Math.max(this.opts.timeoutMs ?? 500, 100)
    const client = new RedisClient(this.url, { autoReconnect: false, maxRetries: 0, enableOfflineQueue: false, connectionTimeout: timeoutMs })
    this.sub = client
    client.onclose = (err) => {
      if (this.sub !== client) return
      this.lost(err?.message ?? 'connection closed')
    }
    try {
      await client.connect()
      await client.subscribe(this.channel, (message: string) => this.receive(message))
      if (this.sub !== client || this.closed) return
      // Subscribed after a loss, or after failing to subscribe at start: events may have been missed.
      const missed = this.everSubscribed || this.lastError !== undefined
      this.subscribed = true
      this.backoffMs = BACKOFF_MIN_MS
      this.lastError = undefined
      if (this.everSubscribed) this.resubscriptions++
      if (missed) {
        this.logger.info({ channel: this.channel }, 'cache invalidation relay subscribed again; local caches dropped')
        try {
          this.opts.onResync?.()
        } catch (err) {
          this.logger.error({ err }, 'a cache failed to drop its entries after the relay came back')
        }
      }
      this.everSubscribed = true
    } catch (err) {
      if (this.sub !== client) return
      this.lost(err instanceof Error ? err.message : String(err))
    }
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
      this.logger.warn({ err: reason, channel: this.channel }, 'cache invalidation relay is not subscribed; caches fall back to their TTL until it is back')
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

  private receive(message: string): void {
    let e: { from?: unknown; kind?: unknown; id?: unknown }
    try {
      e = JSON.parse(message)
    } catch {
      return
    }
    if (e.from === this.instance || typeof e.kind !== 'string' || !KINDS.has(e.kind) || typeof e.id !== 'string' || e.id.length > 200) return
    this.received++
    this.replaying = true
    try {
      this.bus.emit({ kind: e.kind as InvalidationEvent['kind'], id: e.id })
    } catch (err) {
      this.logger.error({ err }, 'a cache failed to apply a remote invalidation')
    } finally {
      this.replaying = false
    }
  }

  close(): void {
    this.closed = true
    this.subscribed = false
    clearTimeout(this.retry)
    this.unsubscribe?.()
    const sub = this.sub
    this.sub = undefined
    try {
      sub?.close()
    } catch {}
    this.pub?.close()
  }
}
