/**
 * The real app in-process for the bench's in-process scripts (bench/login-work.ts, bench/refresh-work.ts):
 * every plugin, production settings, a SQLite file in a temporary folder, logs written to /dev/null (through the
 * binary's LogSink), and a `post` and a `get` through the same handler Bun.serve calls. `close()` closes it and removes the folder.
 */
import { mkdtempSync, openSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildDeps, createApp, createHandler } from '../../src/app'
import { loadConfig } from '../../src/config'
import { createLogger, LogSink } from '../../src/lib/logger'

export const PASSWORD = 'correct horse battery staple 42'

export async function inProcessApp(name: string, env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), `bulwark-${name}-`))
  const config = loadConfig({
    BULWARK_ENV: 'production',
    BULWARK_SECRET: 'k3J9x!Qm2Lr8Vt5Pz1Wc7Yb4Nd6Hf0Gs-aE_uR',
    BULWARK_PUBLIC_URL: 'http://127.0.0.1:1',
    BULWARK_ALLOW_HTTP: '1',
    BULWARK_DATA_DIR: dir,
    BULWARK_UPLOADS_SCAN: 'off',
    BULWARK_RATE_LIMIT: 'off',
    BULWARK_METRICS_PUBLIC: '1',
    // Settings to compare from the command line (e.g. BULWARK_DB_CHECKPOINT=inline bun bench/refresh-work.ts).
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('BULWARK_'))),
    ...env,
  })
  // The binary's own destination (a LogSink on a file descriptor: hot-path lines formatted after the response,
  // in batches), on /dev/null. A plain stream would send every line through pino synchronously instead.
  const logger = createLogger('info', LogSink.fd(openSync('/dev/null', 'w')))
  const deps = await buildDeps(config, { logger })
  const handle = createHandler(createApp(deps), deps)
  // With its Content-Length, as an HTTP client sends a JSON body (a Request made here has none by itself).
  const post = (path: string, body: unknown) => {
    const text = JSON.stringify(body)
    return handle(new Request(`http://127.0.0.1${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), 'user-agent': 'bench' }, body: text }), '127.0.0.1')
  }
  const get = (path: string, headers: Record<string, string> = {}) => handle(new Request(`http://127.0.0.1${path}`, { headers: { 'user-agent': 'bench', ...headers } }), '127.0.0.1')
  const close = async () => {
    await deps.close()
    rmSync(dir, { recursive: true, force: true })
  }
  return { deps, post, get, close }
}
