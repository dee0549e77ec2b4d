/**
 * Carries invalidation events between instances through Redis pub/sub, so a logout, a revoked session, a
 * disabled user, a role change or a new lock on one instance takes effect on every other instance's
 * caches on their next request (instead of after the cache TTL). Local events are published; received
 * events are re-emitted locally (never re-published). Pub/sub is best effort: if Redis is down, caches
 * fall back to their TTL (`BULWARK_CACHE_TTL`), and the relay reconnects by itself.
 */
import { RedisClient } from 'bun'
import type { Invalidation, InvalidationEvent } from './invalidation'
import type { Logger } from './logger'

const KINDS = new Set(['user', 'role', 'session', 'lockout'])

export class InvalidationRelay {
  readonly instance = crypto.randomUUID()
  private readonly channel: string
  private sub: RedisClient | undefined
  private pub: RedisClient | undefined
  private replaying = false
  private unsubscribe: (() => void) | undefined
  received = 0

  constructor(
    private readonly bus: Invalidation,
    private readonly url: string,
    prefix: string,
    private readonly logger: Logger,
  ) {
    this.channel = `${prefix}invalidation`
  }

  /** Subscribes to the channel and starts publishing local events. */
  async start(): Promise<void> {
    this.sub = new RedisClient(this.url, { autoReconnect: true, enableOfflineQueue: false })
    this.pub = new RedisClient(this.url, { autoReconnect: true, enableOfflineQueue: false })
    this.sub.onclose = () => {}
    this.pub.onclose = () => {}
    this.unsubscribe = this.bus.on((e) => {
      if (this.replaying || !this.pub?.connected) return
      this.pub.publish(this.channel, JSON.stringify({ from: this.instance, kind: e.kind, id: e.id })).catch((err: unknown) => {
        this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not publish a cache invalidation; other instances rely on their TTL')
      })
    })
    try {
      await Promise.all([this.sub.connect(), this.pub.connect()])
      await this.sub.subscribe(this.channel, (message: string) => this.receive(message))
    } catch (err) {
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'cache invalidation relay could not subscribe; caches fall back to their TTL')
    }
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
    this.unsubscribe?.()
    try {
      this.sub?.close()
      this.pub?.close()
    } catch {}
  }
}
