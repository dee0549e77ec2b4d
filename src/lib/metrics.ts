/**
 * Prometheus metrics (prom-client) on a per-app registry, so several apps in one test process do not
 * share counters. Request metrics are labelled by route pattern, never by raw path (bounded cardinality).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export class Metrics {
  readonly registry = new Registry()
  readonly requests: Counter<'method' | 'route' | 'status'>
  readonly duration: Histogram<'method' | 'route'>
  readonly securityEvents: Counter<'type' | 'outcome'>
  private gauges: Array<() => void> = []

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'bulwark_' })
    this.requests = new Counter({ name: 'bulwark_http_requests_total', help: 'HTTP requests by route pattern and status', labelNames: ['method', 'route', 'status'], registers: [this.registry] })
    this.duration = new Histogram({
      name: 'bulwark_http_request_duration_seconds',
      help: 'HTTP request duration by route pattern',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    })
    this.securityEvents = new Counter({ name: 'bulwark_security_events_total', help: 'Security events recorded', labelNames: ['type', 'outcome'], registers: [this.registry] })
  }

  /** A gauge whose value is read at scrape time (cache sizes, hit counters, breaker states). */
  gauge(name: string, help: string, labelNames: string[], read: () => Array<{ labels: Record<string, string>; value: number }>): void {
    const g = new Gauge({ name, help, labelNames, registers: [this.registry] })
    this.gauges.push(() => {
      g.reset()
      for (const { labels, value } of read()) g.set(labels, value)
    })
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method, route, status: String(status) })
    this.duration.observe({ method, route }, seconds)
  }

  async render(): Promise<string> {
    for (const refresh of this.gauges) refresh()
    return this.registry.metrics()
  }
}
