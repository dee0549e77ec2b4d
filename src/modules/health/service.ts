/**
 * Readiness checks. Each dependency registers a check; `/health/ready` runs them all with a timeout
 * and is 503 when any required one fails. Optional dependencies (a degraded cache) report `degraded`
 * without failing readiness, since Bulwark keeps serving on its fallbacks.
 */
import type { Database } from 'bun:sqlite'

export type CheckStatus = 'ok' | 'degraded' | 'down'

export interface CheckResult {
  status: CheckStatus
  latencyMs: number
  detail?: string
}

export interface HealthCheck {
  name: string
  /** A failing required check makes the instance not ready. */
  required: boolean
  run(): Promise<void | { status: CheckStatus; detail?: string }> | void | { status: CheckStatus; detail?: string }
}

const TIMEOUT_MS = 2000

export class HealthService {
  private checks: HealthCheck[] = []

  add(check: HealthCheck): void {
    this.checks.push(check)
  }

  async ready(): Promise<{ status: 'ok' | 'degraded' | 'down'; checks: Record<string, CheckResult> }> {
    const results = await Promise.all(
      this.checks.map(async (c): Promise<[string, CheckResult, boolean]> => {
        const t0 = performance.now()
        let timer: Timer | undefined
        try {
          const r = await Promise.race([
            Promise.resolve().then(() => c.run()),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error('timed out')), TIMEOUT_MS)
            }),
          ])
          const latencyMs = Math.round((performance.now() - t0) * 100) / 100
          return [c.name, { status: r?.status ?? 'ok', latencyMs, ...(r?.detail ? { detail: r.detail } : {}) }, c.required]
        } catch (err) {
          const latencyMs = Math.round((performance.now() - t0) * 100) / 100
          return [c.name, { status: 'down', latencyMs, detail: err instanceof Error ? err.message.slice(0, 120) : 'failed' }, c.required]
        } finally {
          clearTimeout(timer)
        }
      }),
    )
    const checks: Record<string, CheckResult> = {}
    let status: 'ok' | 'degraded' | 'down' = 'ok'
    for (const [name, r, required] of results) {
      checks[name] = r
      if (r.status === 'down' && required) status = 'down'
      else if (r.status !== 'ok' && status === 'ok') status = 'degraded'
    }
    return { status, checks }
  }
}

/** The database check: a real read through the same connection the app uses. */
export const databaseCheck = (sqlite: Database): HealthCheck => ({
  name: 'database',
  required: true,
  run: () => {
    sqlite.query('SELECT count(*) AS n FROM roles').get()
  },
})
