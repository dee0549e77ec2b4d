/**
 * Prometheus metrics (prom-client) on a per-app registry, so several apps in one test process do not
 * share counters. Request metrics are labelled by route pattern, never by raw path (bounded cardinality).
 */
import v8 from 'node:v8'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** The parts of prom-client's Counter and Histogram that observeRequest writes (prom-client 15). */
interface CounterEntry {
  labels: Record<string, string>
  value: number
}
interface HistogramEntry {
  labels: Record<string, string>
  sum: number
  count: number
  bucketValues: Record<number, number>
}
interface Internals<E> {
  hashMap: Record<string, E>
}

export class Metrics {
  readonly registry = new Registry()
  readonly requests: Counter<'method' | 'route' | 'status'>
  readonly duration: Histogram<'method' | 'route'>
  readonly securityEvents: Counter<'type' | 'outcome'>
  private gauges: Array<() => void> = []

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics) {
      // prom-client registers per-space heap gauges (nodejs_heap_space_size_*) when v8.getHeapSpaceStatistics()
      // answers, and reads them on every scrape. Bun answers it by walking the whole JavaScript heap: 41–50 ms a
      // call with 300,000 objects, the event loop blocked, at start-up and on each scrape, for figures that split
      // the heap bulwark_nodejs_heap_size_* already reports. Throwing ERR_NOT_IMPLEMENTED (what prom-client
      // expects from a runtime without them) for that one call makes it leave those gauges out, on purpose.
      const heapSpaces = v8.getHeapSpaceStatistics
      v8.getHeapSpaceStatistics = () => {
        throw Object.assign(new Error('v8.getHeapSpaceStatistics is not implemented in Bun'), { code: 'ERR_NOT_IMPLEMENTED' })
      }
      try {
        collectDefaultMetrics({ register: this.registry, prefix: 'bulwark_' })
      } finally {
        v8.getHeapSpaceStatistics = heapSpaces
      }
      // prom-client names these gauges `…_total`, which `promtool check metrics` refuses (only counters end in
      // _total); the per-type gauges without the suffix (`bulwark_nodejs_active_handles{type}`) stay.
      for (const n of ['active_handles_total', 'active_requests_total', 'active_resources_total']) this.registry.removeSingleMetric(`bulwark_nodejs_${n}`)
    }
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

  /**
   * A counter whose value is read at scrape time from a monotonic source (cache hits, dropped log lines).
   * The name must end in `_total` (OpenMetrics); the source must never go down.
   */
  counter(name: string, help: string, labelNames: string[], read: () => Array<{ labels: Record<string, string>; value: number }>): void {
    if (!name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`)
    const c = new Counter({ name, help, labelNames, registers: [this.registry] })
    this.gauges.push(() => {
      c.reset()
      for (const { labels, value } of read()) c.inc(labels, value)
    })
  }

  /** A gauge whose value is read at scrape time (cache sizes, breaker states). */
  gauge(name: string, help: string, labelNames: string[], read: () => Array<{ labels: Record<string, string>; value: number }>): void {
    const g = new Gauge({ name, help, labelNames, registers: [this.registry] })
    this.gauges.push(() => {
      g.reset()
      for (const { labels, value } of read()) g.set(labels, value)
    })
  }

  /** Per label set, prom-client's own entries of the two request metrics (see observeRequest). */
  private requestEntries = new Map<string, { count: CounterEntry; duration: HistogramEntry }>()
  private entryMaps: [object, object] | undefined

  /**
   * Counts a request and observes its duration. prom-client validates and hashes the labels on every call
   * (several µs a request); here that happens once per label set, then the counts go straight into the
   * entries prom-client renders (its `hashMap`, the same objects its `inc` and `observe` update), so the
   * scrape output is unchanged (test/modules/metrics.test.ts).
   */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const counts = (this.requests as unknown as Internals<CounterEntry>).hashMap
    const durations = (this.duration as unknown as Internals<HistogramEntry>).hashMap
    // A reset replaces the maps: the remembered entries are then stale.
    if (!this.entryMaps || this.entryMaps[0] !== counts || this.entryMaps[1] !== durations) {
      this.requestEntries.clear()
      this.entryMaps = [counts, durations]
    }
    const key = `${status} ${method} ${route}`
    const e = this.requestEntries.get(key)
    if (!e || !Number.isFinite(seconds)) {
      this.requests.inc({ method, route, status: String(status) })
      this.duration.observe({ method, route }, seconds)
      const statusLabel = String(status)
      const count = Object.values(counts).find((c) => c.labels.method === method && c.labels.route === route && c.labels.status === statusLabel)
      const duration = Object.values(durations).find((d) => d.labels.method === method && d.labels.route === route)
      if (count && duration) this.requestEntries.set(key, { count, duration })
      return
    }
    e.count.value += 1
    const d = e.duration
    d.sum += seconds
    d.count += 1
    const bounds = (this.duration as unknown as { upperBounds: number[] }).upperBounds
    for (let i = 0; i < bounds.length; i++) {
      if (seconds <= bounds[i]!) {
        d.bucketValues[bounds[i]!]! += 1
        break
      }
    }
  }

  /**
   * The route label of a request that was answered before routing (a CORS preflight, a CSRF refusal, a
   * 429 or 413 from onRequest): the pattern of the first registered route whose path matches, any method.
   * Undefined for a path no route serves (those stay `unmatched`).
   */
  routeResolver(routes: ReadonlyArray<{ path: string }>): (url: string) => string | undefined {
    const patterns = [...new Set(routes.map((r) => r.path))]
      .filter((p) => p.startsWith('/'))
      .map((p) => ({
        path: p,
        re: new RegExp(
          `^${p
            .split('/')
            .map((seg) => (seg === '*' ? '.*' : seg.startsWith(':') ? (seg.endsWith('?') ? '[^/]*' : '[^/]+') : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
            .join('/')}$`,
        ),
        // Static routes before parameterised ones (Elysia's router prefers them too).
        rank: p.includes(':') || p.includes('*') ? 1 : 0,
      }))
      .sort((a, b) => a.rank - b.rank)
    return (url) => {
      const start = url.indexOf('/', url.indexOf('//') + 2)
      const path = (start < 0 ? '/' : url.slice(start)).split('?')[0]!
      return patterns.find((p) => p.re.test(path))?.path
    }
  }

  async render(): Promise<string> {
    for (const refresh of this.gauges) refresh()
    return this.registry.metrics()
  }
}
