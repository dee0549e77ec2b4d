/**
 * Password strength scoring (zxcvbn-ts), off the event loop and out of memory while unused.
 *
 * zxcvbn-ts's English and common dictionaries are 19 MB of JavaScript heap once imported, and building its
 * ranked dictionaries costs ~300 ms of CPU on a slow core; one score costs 9–11 ms there (a 64-character
 * password more). Imported at start-up, the idle binary held them for good: 120 MiB of RSS against 93 MiB
 * without, and 60 ms more to start (median of 7 starts; the README's Performance section, Round 5). So the
 * server scores passwords in a worker thread that starts on the first score, answers every score after it,
 * and ends after `idleMs` without one: its whole heap goes with it (anonymous memory back from ~60 MiB to
 * ~5 MiB over the idle process, measured). A score never blocks the server's thread, whatever the password.
 *
 * If the worker cannot start, fails, cannot score, or answers nothing at all within `timeoutMs`, what it owed
 * is computed on the server's thread instead (the dictionaries then imported there, once) and the failure is
 * logged; after MAX_WORKER_FAILURES failures in a row the scorer stays on the server's thread (`mode` says
 * `inline`, as does the metric). A worker that is only busy (it answered other scores meanwhile) is kept, and
 * just the late score is computed here. `fallbacks` counts the scores computed here in the worker's stead. A
 * sign-up is never refused for a scorer problem.
 */
import type { ZxcvbnFactory } from '@zxcvbn-ts/core'
import type { Logger } from './logger'

/** What the policy needs from a score: zxcvbn's 0–4 and its warning (empty when it has none). */
export interface Strength {
  score: number
  warning: string
}

// Scoring is super-linear in length: 128 random characters took ~250 ms of CPU on the dev machine,
// 64 with few l33t substitutions ~15 ms. Past 64 characters only the start is scored, which can only
// under-rate a password (a weak start is still weak).
const ZXCVBN_MAX_LENGTH = 64
const ZXCVBN_L33T_MAX_SUBSTITUTIONS = 8

/** Imports the dictionaries and builds zxcvbn's ranked dictionaries (the ~300 ms, 19 MB part). */
export async function loadZxcvbn(): Promise<ZxcvbnFactory> {
  const [{ ZxcvbnFactory }, common, en] = await Promise.all([import('@zxcvbn-ts/core'), import('@zxcvbn-ts/language-common'), import('@zxcvbn-ts/language-en')])
  return new ZxcvbnFactory({
    translations: en.translations,
    graphs: common.adjacencyGraphs,
    dictionary: { ...common.dictionary, ...en.dictionary },
    maxLength: ZXCVBN_MAX_LENGTH,
    l33tMaxSubstitutions: ZXCVBN_L33T_MAX_SUBSTITUTIONS,
  })
}

export function scoreWith(z: ZxcvbnFactory, password: string, words: string[]): Strength {
  const r = z.check(password, words)
  return { score: r.score, warning: r.feedback.warning ?? '' }
}

let onThisThread: Promise<ZxcvbnFactory> | undefined
/** The dictionaries on this thread, loaded once per process (inline scoring, and the fallback); a failed load is not kept. */
const inlineZxcvbn = (): Promise<ZxcvbnFactory> =>
  (onThisThread ??= loadZxcvbn().catch((err) => {
    onThisThread = undefined
    throw err
  }))

/** Failures in a row (start, crash, time-out) after which scoring stays on the server's thread. */
export const MAX_WORKER_FAILURES = 3
/** How long one score may wait for the worker by default (ScorerOptions.timeoutMs). */
const DEFAULT_TIMEOUT_MS = 10_000

export interface ScorerOptions {
  /** The worker's module (src/strength-worker.ts); none: always on the server's thread. */
  workerUrl?: string
  /** How long the worker lives without a score. */
  idleMs: number
  /** How long one score may take in the worker before it is computed here instead. */
  timeoutMs?: number
  logger?: Logger
}

interface Pending {
  resolve: (s: Strength | Promise<Strength>) => void
  password: string
  words: string[]
  timer: ReturnType<typeof setTimeout>
  /** `answers` when it was posted: a worker that answered others since is busy, not stuck. */
  answersBefore: number
}

export class PasswordScorer {
  /** Workers started so far (each loads the dictionaries once). */
  loads = 0
  /** Failures in a row; MAX_WORKER_FAILURES of them switch to `inline`. */
  failures = 0
  /** Scores the worker owed that were computed on the server's thread instead (start failure, crash, time-out, its error). */
  fallbacks = 0
  private answers = 0
  private worker: Worker | undefined
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private idleTimer: ReturnType<typeof setTimeout> | undefined
  private forceInline: boolean
  private closed = false

  constructor(private readonly opts: ScorerOptions) {
    this.forceInline = !opts.workerUrl
  }

  /** `worker` while scores go to a worker thread (running or not), `inline` once they run on the server's thread. */
  get mode(): 'worker' | 'inline' {
    return this.forceInline ? 'inline' : 'worker'
  }

  private get timeoutMs(): number {
    return this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
  }

  /** True while a worker thread is running (and holds the dictionaries). */
  get loaded(): boolean {
    return this.worker !== undefined
  }

  async check(password: string, words: string[]): Promise<Strength> {
    if (this.forceInline || this.closed) return this.inlineScore(password, words)
    const w = this.worker ?? this.spawn()
    if (!w) {
      this.fallbacks++
      return this.inlineScore(password, words)
    }
    if (this.idleTimer) {
      clearTimeout(this.idleTimer)
      this.idleTimer = undefined
    }
    const id = this.nextId++
    return new Promise<Strength>((resolve) => {
      const timer = setTimeout(() => this.timedOut(w, id), this.timeoutMs)
      this.pending.set(id, { resolve, password, words, timer, answersBefore: this.answers })
      w.postMessage({ id, password, words })
    })
  }

  /** Ends the worker (shutdown); what it still owed, and later scores, run on the server's thread. */
  close(): void {
    this.closed = true
    this.stopWorker()
    this.scoreOwedHere()
  }

  private spawn(): Worker | undefined {
    let w: Worker
    try {
      w = new Worker(this.opts.workerUrl!)
    } catch (err) {
      this.noteFailure(err instanceof Error ? err.message : String(err))
      return undefined
    }
    this.worker = w
    this.loads++
    // An idle worker does not keep the process alive (Bun's Worker.unref, as in node:worker_threads).
    ;(w as unknown as { unref?: () => void }).unref?.()
    w.onmessage = (e: MessageEvent) => {
      const m = e.data as { id: number; score?: number; warning?: string; error?: string }
      this.answers++
      const p = this.pending.get(m.id)
      if (!p) return
      this.pending.delete(m.id)
      clearTimeout(p.timer)
      if (typeof m.score !== 'number') {
        // The worker runs but cannot score (its dictionaries did not load): a failure like a crash.
        this.fallbacks++
        p.resolve(this.inlineScore(p.password, p.words))
        this.failed(w, m.error ?? 'the password scorer worker answered without a score')
        return
      }
      this.failures = 0
      p.resolve({ score: m.score, warning: m.warning ?? '' })
      if (this.pending.size === 0 && this.worker === w) this.armIdle(w)
    }
    w.onerror = (e: ErrorEvent) => this.failed(w, e.message || 'the password scorer worker failed')
    // A worker that ends without an error event (its thread gone, its module not found in some builds).
    w.addEventListener('close', () => this.failed(w, 'the password scorer worker exited'))
    return w
  }

  private armIdle(w: Worker): void {
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      if (this.worker === w && this.pending.size === 0) this.stopWorker()
    }, this.opts.idleMs)
    this.idleTimer.unref?.()
  }

  /**
   * Score `id` got no answer in time. If the worker answered other scores since it was posted, it is busy, not
   * stuck: only this score is computed here (its late answer is dropped). Otherwise the worker is ended as failed.
   */
  private timedOut(w: Worker, id: number): void {
    const p = this.pending.get(id)
    if (!p) return
    if (this.worker === w && this.answers > p.answersBefore) {
      this.pending.delete(id)
      this.fallbacks++
      p.resolve(this.inlineScore(p.password, p.words))
      return
    }
    this.failed(w, `no answer within ${this.timeoutMs} ms`)
  }

  /** The worker `w` failed: it is ended, and what it owed is scored here. */
  private failed(w: Worker, reason: string): void {
    if (this.worker !== w) return
    this.stopWorker()
    this.noteFailure(reason)
    this.scoreOwedHere()
  }

  private scoreOwedHere(): void {
    const owed = [...this.pending.values()]
    this.pending.clear()
    this.fallbacks += owed.length
    for (const p of owed) {
      clearTimeout(p.timer)
      p.resolve(this.inlineScore(p.password, p.words))
    }
  }

  private noteFailure(reason: string): void {
    this.failures++
    const inline = this.failures >= MAX_WORKER_FAILURES
    if (inline) this.forceInline = true
    this.opts.logger?.warn({ msg: inline ? 'password scorer worker failed; scoring on the server thread from now on' : 'password scorer worker failed; this score runs on the server thread', reason, failures: this.failures })
  }

  private stopWorker(): void {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer)
      this.idleTimer = undefined
    }
    const w = this.worker
    this.worker = undefined
    w?.terminate()
  }

  private async inlineScore(password: string, words: string[]): Promise<Strength> {
    return scoreWith(await inlineZxcvbn(), password, words)
  }
}
