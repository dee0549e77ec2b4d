/**
 * Carries invalidation events between instances through Redis pub/sub, so a logout, a revoked session, a
 * disabled user, a role change or a new lock on one instance takes effect on every other instance's
 * caches on their next request (instead of after the cache TTL). Local events are published; received
 * events are re-emitted locally (never re-published).
 *
 * Pub/sub is fire-and-forget and a subscription does not survive a lost connection: the subscription is a
 * `RedisSubscriber` (src/lib/redis-subscriber.ts: its own connection, resubscription with backoff). While it
 * is away, readiness check `relay` is `degraded`; events published meanwhile are lost, so on every
 * re-subscription it calls `onResync`, which drops the local caches: a logout made elsewhere during the
 * outage is refused on the next request.
 */
import type { Invalidation, InvalidationEvent } from './invalidation'
import type { Logger } from './logger'
import { Redis } from './redis'
import { RedisSubscriber } from './redis-subscriber'

const KINDS = new Set(['user', 'role', 'session', 'lockout', 'client', 'permissions', 'webhooks'])

export interface RelayOptions {
  /** Called after a re-subscription: events may have been missed, so local caches must be dropped. */
  onResync?: () => void
  /** Connect and command timeout (ms). */
  timeoutMs?: number
}

export class InvalidationRelay {
  readonly instance = crypto.randomUUID()
  private readonly channel: string
  private sub: RedisSubscriber | undefined
  private pub: Redis | undefined
  private replaying = false
  /** PUBLISH commands not yet answered (each settles, never rejects). */
  private readonly pending = new Set<Promise<void>>()
  private unsubscribe: (() => void) | undefined
  private closed = false
  /** Events received from other instances. */
  received = 0

  /** Whether the subscription is live now. */
  get subscribed(): boolean {
    return this.sub?.subscribed ?? false
  }

  /** Times the subscription was re-established after a loss. */
  get resubscriptions(): number {
    return this.sub?.resubscriptions ?? 0
  }

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
    this.sub = new RedisSubscriber({
      url: this.url,
      channel: this.channel,
      logger: this.logger,
      timeoutMs,
      onMessage: (message) => this.receive(message),
      onResync: this.opts.onResync,
      messages: {
        lost: 'cache invalidation relay is not subscribed; caches fall back to their TTL until it is back',
        back: 'cache invalidation relay subscribed again; local caches dropped',
        resyncFailed: 'a cache failed to drop its entries after the relay came back',
      },
    })
    await this.sub.start()
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
    const lastError = this.sub?.lastError
    return { status: 'degraded', detail: `not subscribed to invalidations${lastError ? ` (${lastError.slice(0, 80)})` : ''}; caches rely on their TTL` }
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
    this.unsubscribe?.()
    this.sub?.close()
    this.pub?.close()
  }
}
