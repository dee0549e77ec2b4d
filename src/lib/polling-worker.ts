/**
 * A background round on a timer, one at a time: the outbox workers of mail (src/modules/mail/outbox.ts) and
 * webhooks (src/modules/webhooks/service.ts). `start` polls every interval (the timer does not keep the process
 * alive), `nudge` asks for a round soon, `deliverDue` runs one now (a call during a round waits for it and
 * runs one more), `stop` waits for the round in flight.
 */
import type { Logger } from './logger'

export abstract class PollingWorker<R> {
  private timer: ReturnType<typeof setInterval> | undefined
  private running: Promise<R> | undefined
  private again = false
  /** True while `stop` waits: a round ends after the item in hand. */
  protected stopping = false

  constructor(
    private readonly poll: {
      intervalMs: () => number
      logger: Logger
      /** The log line of a round that threw. */
      failed: string
      /**
       * Runs the nudge's round outside the caller's context: a nudge comes from inside the transaction that
       * queued the row, and a round in that context would run its queries in that (closed) transaction.
       */
      detach: (fn: () => void) => void
    },
  ) {}

  /** One pass over what is due. */
  protected abstract round(): Promise<R>
  /** The report of two rounds that one `deliverDue` call ran. */
  protected abstract merge(first: R, more: R): R

  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => this.kick(), this.poll.intervalMs())
    this.timer.unref?.()
    this.kick()
  }

  /** Stops polling and waits for the round in flight. */
  async stop(): Promise<void> {
    this.stopping = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    while (this.running) await this.running
    this.stopping = false
  }

  /** Starts a round soon if the worker is running (after a row was queued). */
  nudge(): void {
    if (this.timer) this.poll.detach(() => queueMicrotask(() => this.kick()))
  }

  /** Delivers every row due now; a call during a round waits for it and runs one more. */
  async deliverDue(): Promise<R> {
    if (this.running) {
      this.again = true
      await this.running
    }
    this.running = this.round().finally(() => {
      this.running = undefined
    })
    const report = await this.running
    if (this.again && !this.stopping) {
      this.again = false
      return this.merge(report, await this.deliverDue())
    }
    return report
  }

  private kick(): void {
    if (this.running) {
      this.again = true
      return
    }
    void this.deliverDue().catch((e) => this.poll.logger.error({ err: (e as Error).message }, this.poll.failed))
  }
}
