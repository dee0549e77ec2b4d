/**
 * Security events for refused requests: `token_rejected` (401 for a presented but invalid token),
 * `access_denied` (403) and `request_rejected` (422 `validation_failed`). The error handler reports every
 * problem it answers; this file decides which become events and bounds how many a flood can write.
 *
 * An event carries the route pattern (never the raw path), method, status, a reason code, the user id
 * when the caller is known, and the request's ip, user agent and request id; never the token, the body
 * or the submitted values.
 *
 * Bounds: at most `perSource` events per type per source (user id when known, else the client address,
 * IPv6 by /64) per clock minute, counted in an LRU of 10,000 sources, and at most `perType` events per
 * type per minute over all sources (the ceiling that holds when a flood rotates addresses). Every event
 * over a bound is counted on `bulwark_security_events_suppressed_total{type}` at once, and written as one
 * `security_events_suppressed` summary per type and minute (with the busiest sources) when the next
 * refusal of that type arrives after the minute.
 */
import { LRUCache } from 'lru-cache'
import { Counter, type Registry } from 'prom-client'
import type { Clock } from '../../lib/clock'
import { ipKey } from '../../lib/ip'
import { contextOf } from '../../plugins/request-context'
import type { AuditService } from './service'

declare module '../../plugins/request-context' {
  interface RequestContext {
    /** Why the auth layer refused this request, for its security event. */
    denial?: { reason: string; permission?: string }
  }
}

/** Notes why the auth layer is about to refuse a request (read when the refusal becomes an event). */
export function noteDenial(request: Request, reason: string, permission?: string): void {
  contextOf(request).denial = permission ? { reason, permission } : { reason }
}

export type DenialType = 'token_rejected' | 'access_denied' | 'request_rejected'

/** 401 codes that mean a token (bearer, refresh or MFA) was presented and refused. */
const TOKEN_CODES = new Set(['invalid_token', 'invalid_refresh_token', 'invalid_mfa_token'])

const MINUTE = 60_000
const MAX_SOURCES = 10_000
const MAX_TRACKED_SUPPRESSED = 100
const TOP_SOURCES = 5

interface TypeWindow {
  minute: number
  written: number
  suppressed: number
  bySource: Map<string, number>
}

export interface DenialLimits {
  perSource: number
  perType: number
}

export class DenialRecorder {
  private readonly sources = new LRUCache<string, { minute: number; count: number }>({ max: MAX_SOURCES })
  private readonly types = new Map<DenialType, TypeWindow>()
  private readonly suppressedTotal?: Counter<'type'>

  constructor(private readonly d: { audit: AuditService; clock: Clock; limits: DenialLimits; registry?: Registry }) {
    if (d.registry) {
      this.suppressedTotal = new Counter({ name: 'bulwark_security_events_suppressed_total', help: 'Refusal events not written because a per-source or per-type bound was reached', labelNames: ['type'], registers: [d.registry] })
    }
  }

  /** Classifies a problem response; records it when it is a refusal and within the bounds. Never throws. */
  readonly observe = async (request: Request, status: number, code: string, location?: string): Promise<void> => {
    try {
      const type = classify(request, status, code)
      if (!type) return
      const ctx = contextOf(request)
      const source = ctx.userId ? `user:${ctx.userId}` : `ip:${ipKey(ctx.ip)}`
      const admitted = this.admit(type, source)
      // A window that just closed writes its summary first (kept in order with the event below).
      if (this.summaries.length) await Promise.all(this.summaries.splice(0))
      if (!admitted) return
      const details: Record<string, unknown> = {
        route: ctx.route ?? null,
        method: request.method,
        status,
        reason: ctx.denial?.reason ?? code,
      }
      if (ctx.denial?.permission) details.permission = ctx.denial.permission
      if (location) details.location = location
      await this.d.audit.record({ type, outcome: 'failure', actorId: ctx.userId ?? null, details }, { ip: ctx.ip, userAgent: ctx.userAgent, requestId: ctx.requestId })
    } catch {
      // A refusal must be answered even when its event cannot be written.
    }
  }

  private readonly summaries: Promise<void>[] = []

  private admit(type: DenialType, source: string): boolean {
    const minute = Math.floor(this.d.clock.now() / MINUTE)
    let tw = this.types.get(type)
    if (!tw || tw.minute !== minute) {
      if (tw && tw.suppressed > 0) this.summaries.push(this.summarise(type, tw))
      tw = { minute, written: 0, suppressed: 0, bySource: new Map() }
      this.types.set(type, tw)
    }
    const key = `${type} ${source}`
    let sw = this.sources.get(key)
    if (!sw || sw.minute !== minute) {
      sw = { minute, count: 0 }
      this.sources.set(key, sw)
    }
    if (sw.count >= this.d.limits.perSource || tw.written >= this.d.limits.perType) {
      tw.suppressed++
      const seen = tw.bySource.get(source)
      if (seen !== undefined || tw.bySource.size < MAX_TRACKED_SUPPRESSED) tw.bySource.set(source, (seen ?? 0) + 1)
      this.suppressedTotal?.inc({ type })
      return false
    }
    sw.count++
    tw.written++
    return true
  }

  private async summarise(type: DenialType, tw: TypeWindow): Promise<void> {
    const top = [...tw.bySource.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP_SOURCES)
      .map(([source, suppressed]) => ({ source, suppressed }))
    await this.d.audit.record({
      type: 'security_events_suppressed',
      outcome: 'info',
      details: { suppressedType: type, suppressed: tw.suppressed, from: new Date(tw.minute * MINUTE).toISOString(), to: new Date((tw.minute + 1) * MINUTE).toISOString(), topSources: top },
    })
  }
}

function classify(request: Request, status: number, code: string): DenialType | undefined {
  if (status === 401) {
    // A missing credential is not a rejected token; wrong passwords have their own `login_failed` events.
    if (TOKEN_CODES.has(code) || (code === 'unauthorized' && request.headers.has('authorization'))) return 'token_rejected'
    return undefined
  }
  // CSRF refusals have their own `csrf_failed` event.
  if (status === 403) return code === 'csrf_failed' ? undefined : 'access_denied'
  if (status === 422 && code === 'validation_failed') return 'request_rejected'
  return undefined
}
