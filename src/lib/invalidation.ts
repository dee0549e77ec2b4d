/**
 * The invalidation bus: whoever changes a user, a role or a session emits one event, and every cache that
 * holds derived data (effective permissions here, the auth plugin's session/user status cache) drops exactly
 * the affected entries, synchronously, before the change's request answers. A Redis-backed version can
 * publish the same events to other instances by subscribing with `on` and re-emitting what it receives.
 */
/**
 * `permissions`: the application permission registry changed (every role cache is stale); `webhooks`: a webhook
 * endpoint was created, changed, disabled or deleted (the cached enabled endpoints are stale).
 */
export type InvalidationKind = 'user' | 'role' | 'session' | 'lockout' | 'client' | 'permissions' | 'webhooks'

export interface InvalidationEvent {
  kind: InvalidationKind
  id: string
}

export type InvalidationListener = (e: InvalidationEvent) => void

export class Invalidation {
  private readonly listeners = new Set<InvalidationListener>()

  /** Subscribes; returns the function that unsubscribes. */
  on(fn: InvalidationListener): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Delivers the event to every listener now; a throwing listener does not stop the others. */
  emit(e: InvalidationEvent): void {
    let first: unknown
    for (const fn of this.listeners) {
      try {
        fn(e)
      } catch (err) {
        first ??= err
      }
    }
    // A cache that failed to drop an entry would serve stale permissions: surface it to the caller.
    if (first !== undefined) throw first
  }
}
