/**
 * A circuit breaker (closed → open → half-open → closed) around any flaky dependency.
 *
 * Why: when Redis (or clamd, or a webhook) hangs, every caller would otherwise wait for its own timeout.
 * After `failureThreshold` consecutive failures the breaker opens and callers go straight to their
 * fallback; after `coolDownMs` one probe call is let through (half-open): its success closes the
 * breaker, its failure opens it for another cool-down. A failure that `tripOn` recognises (a timeout:
 * the dependency hangs, so every further caller would wait as long) opens it at once. Time comes from
 * the injected clock. `onStateChange` is the place to log: it fires once per change, never per call.
 */
import type { Clock } from './clock'

export type BreakerState = 'closed' | 'open' | 'half-open'

export interface CircuitBreakerOptions {
  /** Name used in logs and events. */
  name: string
  clock: Clock
  /** Consecutive failures that open the breaker (default 3). */
  failureThreshold?: number
  /** How long an open breaker refuses calls before letting one probe through (default 5 s). */
  coolDownMs?: number
  /** Failures that open the breaker at once, whatever the count (e.g. timeouts). */
  tripOn?: (error: unknown) => boolean
  /** Called on every state change; never allowed to throw into the caller. */
  onStateChange?: (to: BreakerState, from: BreakerState, error?: unknown) => void
}

export class CircuitBreaker {
  readonly name: string
  private current: BreakerState = 'closed'
  private failures = 0
  private openedAt = 0
  private probing = false
  private readonly threshold: number
  private readonly coolDownMs: number

  constructor(private readonly opts: CircuitBreakerOptions) {
    this.name = opts.name
    this.threshold = Math.max(1, opts.failureThreshold ?? 3)
    this.coolDownMs = Math.max(0, opts.coolDownMs ?? 5000)
  }

  /** The state as of now (an open breaker whose cool-down has passed reads as half-open). */
  get state(): BreakerState {
    if (this.current === 'open' && this.opts.clock.now() - this.openedAt >= this.coolDownMs) return 'half-open'
    return this.current
  }

  /** Whether a call may go to the dependency now; in half-open only one probe at a time is allowed. */
  allow(): boolean {
    const s = this.state
    if (s === 'closed') return true
    if (s === 'open') return false
    if (this.probing) return false
    if (this.current !== 'half-open') this.transition('half-open')
    this.probing = true
    return true
  }

  /** Reports a successful call. */
  success(): void {
    this.failures = 0
    this.probing = false
    if (this.current !== 'closed') this.transition('closed')
  }

  /** Reports a failed call. */
  failure(error?: unknown): void {
    this.failures++
    const wasProbe = this.probing
    this.probing = false
    const trips = this.failures >= this.threshold || (this.opts.tripOn?.(error) ?? false)
    if (this.current === 'half-open' || wasProbe || (this.current === 'closed' && trips)) {
      this.openedAt = this.opts.clock.now()
      if (this.current !== 'open') this.transition('open', error)
    }
  }

  /** Runs `fn` through the breaker; any failure or an open breaker yields `fallback(error)` instead. */
  async run<T>(fn: () => Promise<T>, fallback: (error?: unknown) => T | Promise<T>): Promise<T> {
    if (!this.allow()) return fallback()
    let result: T
    try {
      result = await fn()
    } catch (err) {
      this.failure(err)
      return fallback(err)
    }
    this.success()
    return result
  }

  private transition(to: BreakerState, error?: unknown): void {
    const from = this.current
    this.current = to
    try {
      this.opts.onStateChange?.(to, from, error)
    } catch {
      // A listener's bug must not turn a fallback into a 500.
    }
  }
}
