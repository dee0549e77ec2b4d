/** Runs wrk (pinned to the load core) with bench/lua/requests.lua and reads its JSON summary. */
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { LOAD_CORE, run } from './proc'

const SCRIPT = join(import.meta.dir, '..', 'lua', 'requests.lua')

export interface Req {
  method: 'GET' | 'POST'
  path: string
  token?: string
  body?: unknown
}

export interface WrkResult {
  requests: number
  seconds: number
  rps: number
  p50Ms: number
  p99Ms: number
  /** Socket errors plus responses whose status was not expected. */
  errors: number
  statuses: Record<string, number>
}

/** Writes requests to a file in the format the Lua script reads (one a line). */
export function writeRequests(file: string, reqs: Req[]): string {
  const lines = reqs.map((r) => `${r.method}\t${r.path}\t${r.token ?? ''}\t${r.body === undefined ? '' : JSON.stringify(r.body)}`)
  writeFileSync(file, `${lines.join('\n')}\n`)
  return file
}

/** Installs wrk from Debian's packages when missing (needs root, as on the project's machines). */
export async function ensureWrk(): Promise<void> {
  if (Bun.which('wrk')) return
  if (process.getuid?.() !== 0) throw new Error('wrk is not installed and this is not root: apt-get install -y wrk')
  process.stdout.write('installing wrk (apt-get update && apt-get install -y wrk)...\n')
  await run(['apt-get', 'update', '-qq'])
  await run(['apt-get', 'install', '-y', '-qq', 'wrk'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  if (!Bun.which('wrk')) throw new Error('wrk still missing after apt-get install')
}

export interface WrkOptions {
  url: string
  requestsFile: string
  seconds: number
  connections: number
  /** Status codes that count as success (default 200). */
  expect?: number[]
  /** Stop rotating at the end of the list (single-use requests such as refresh tokens). */
  once?: boolean
  timeoutS?: number
  threads?: number
}

/** One wrk run; throws if wrk fails or prints no summary. */
export async function wrk(o: WrkOptions): Promise<WrkResult> {
  if (!existsSync(o.requestsFile)) throw new Error(`missing ${o.requestsFile}`)
  const threads = Math.max(1, Math.min(o.threads ?? 1, o.connections))
  const out = await run([
    'taskset', '-c', LOAD_CORE,
    'wrk', `-t${threads}`, `-c${o.connections}`, `-d${o.seconds}s`, `--timeout`, `${o.timeoutS ?? 10}s`,
    '-s', SCRIPT, o.url, '--', o.requestsFile, String(threads), o.once ? 'once' : 'wrap',
  ])
  const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '))
  if (!line) throw new Error(`wrk printed no summary:\n${out}`)
  if (process.env.BENCH_WRK_RAW) process.stderr.write(`${line}\n`)
  const j = JSON.parse(line.slice('BENCH_JSON '.length)) as {
    requests: number
    durationUs: number
    p50Us: number
    p99Us: number
    errors: Record<string, number>
    statuses: Record<string, number>
  }
  const expect = new Set((o.expect ?? [200]).map(String))
  const unexpected = Object.entries(j.statuses).reduce((n, [k, v]) => (expect.has(k) ? n : n + v), 0)
  const socket = (j.errors.connect ?? 0) + (j.errors.read ?? 0) + (j.errors.write ?? 0) + (j.errors.timeout ?? 0)
  const seconds = j.durationUs / 1e6
  return { requests: j.requests, seconds, rps: j.requests / seconds, p50Ms: j.p50Us / 1000, p99Ms: j.p99Us / 1000, errors: unexpected + socket, statuses: j.statuses }
}
