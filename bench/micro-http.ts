#!/usr/bin/env bun
/**
 * Micro-benchmarks of the per-response work in the HTTP layer, as CPU µs (process.cpuUsage), for one source
 * tree: `bun bench/micro-http.ts [root]` (default: this checkout). Run it on two checkouts to compare a
 * change whose effect is below the noise of `bun run bench` on a shared machine. Not a test.
 */
import { openSync } from 'node:fs'
import { join } from 'node:path'

const root = process.argv[2] ?? join(import.meta.dir, '..')
const { compressResponse } = await import(join(root, 'src/plugins/compression.ts'))
const { applySecurityHeaders, securityHeaders } = await import(join(root, 'src/plugins/security-headers.ts'))
const logger = await import(join(root, 'src/lib/logger.ts'))

const sec = securityHeaders({ publicUrl: 'http://x', allowHttp: true })
const body = JSON.stringify({ id: 'u_123', email: 'a@example.com', roles: ['user'], permissions: ['me:read'], mfa: { totp: false, passkeys: 0 } })
const make = () => new Response(body, { headers: { 'content-type': 'application/json', ...sec } })
const plain = new Request('http://localhost/v1/me')
const browser = new Request('http://localhost/v1/me', { headers: { 'accept-encoding': 'gzip, deflate, br, zstd' } })

async function cpuUs(f: () => unknown, n = 100_000): Promise<number> {
  for (let i = 0; i < 10_000; i++) await f()
  const c0 = process.cpuUsage()
  for (let i = 0; i < n; i++) await f()
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / n
}

const out: Record<string, string> = {}
const base = await cpuUs(make)
out['backstop + compression, no Accept-Encoding (beyond building the Response)'] = ((await cpuUs(() => compressResponse(plain, applySecurityHeaders(make(), sec)))) - base).toFixed(2)
out['backstop + compression, browser Accept-Encoding, body under 1 KiB'] = ((await cpuUs(() => compressResponse(browser, applySecurityHeaders(make(), sec)))) - base).toFixed(2)

const sink = logger.LogSink.fd(openSync('/dev/null', 'w'))
const log = logger.createLogger('info', sink)
const line = { method: 'GET', path: '/v1/me', route: '/v1/me', status: 200, durationMs: 1.23, requestId: '0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', userId: 'usr_0193a1b2c3d47e5f8a9b', ip: '203.0.113.9' }
const access: (l: typeof line) => void = logger.accessLogger ? logger.accessLogger(log) : (l) => log.info({ msg: 'request', ...l })
let onCaller = 0
const c0 = process.cpuUsage()
for (let r = 0; r < 50; r++) {
  const a = process.cpuUsage()
  for (let i = 0; i < 1000; i++) access(line)
  const b = process.cpuUsage(a)
  onCaller += b.user + b.system
  await new Promise<void>((res) => sink.flush(() => res()))
}
const c = process.cpuUsage(c0)
out['access-log line, on the response path'] = (onCaller / 50_000).toFixed(2)
out['access-log line, total with its share of the write (/dev/null)'] = ((c.user + c.system) / 50_000).toFixed(2)
console.log(JSON.stringify({ root, cpuMicroseconds: out }, null, 1))
