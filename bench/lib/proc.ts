/** Child processes of the harness: the server under test pinned to a core, its RSS, readiness, and stopping. */
import type { Subprocess } from 'bun'
import { openSync, readdirSync, readFileSync } from 'node:fs'

export const SERVER_CORE = '0'
export const LOAD_CORE = '1'

/** A free TCP port on the loopback interface. */
export function freePort(): number {
  const s = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response('') })
  const port = s.port!
  s.stop(true)
  return port
}

/** Resident and peak memory of a process in MiB, from /proc/<pid>/status (VmRSS, VmHWM). */
export function memoryOf(pid: number): { rssMiB: number; peakMiB: number; anonMiB?: number; fileMiB?: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN)
    // RssAnon: the heaps (JS, native, SQLite's page cache); RssFile: the binary's pages and the database read through mmap.
    const anon = kib('RssAnon')
    const file = kib('RssFile')
    return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024, anonMiB: Number.isFinite(anon) ? anon / 1024 : undefined, fileMiB: Number.isFinite(file) ? file / 1024 : undefined }
  } catch {
    return undefined
  }
}

/**
 * CPU time the process has used so far (user + system), in ms, from /proc/<pid>/stat (clock ticks of 10 ms).
 * CPU per request is what a saturated dedicated core turns into throughput, and unlike req/s it does not
 * drop when other processes share the core.
 */
export function cpuMsOf(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100
  } catch {
    return undefined
  }
}

/** CPU time (ms) of each thread of `pid`, summed by thread name (`/proc/<pid>/task/*`): which threads did the work. */
export function threadCpuOf(pid: number): Map<string, number> {
  const out = new Map<string, number>()
  let tids: string[] = []
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')).replace(/[0-9]+$/, '#')
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
      out.set(name, (out.get(name) ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / 100)
    } catch {}
  }
  return out
}

export interface Child {
  proc: Subprocess
  url: string
  pid: number
  logFile: string
  stop(): Promise<void>
}

/** Starts `cmd` pinned to the server core with `taskset`; stdout is discarded (access logs), stderr goes to logFile. */
export function spawnPinned(cmd: string[], env: Record<string, string>, port: number, logFile: string, core = SERVER_CORE): Child {
  const err = openSync(logFile, 'a')
  const proc = Bun.spawn(['taskset', '-c', core, ...cmd], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env }, stdout: 'ignore', stderr: err, stdin: 'ignore' })
  return {
    proc,
    url: `http://127.0.0.1:${port}`,
    pid: proc.pid,
    logFile,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000)
      await proc.exited
      clearTimeout(t)
    },
  }
}

/** Polls `url` until it answers 200; returns milliseconds waited. Throws (with the log's tail) if the process dies or the deadline passes. */
export async function waitReady(child: Child, path = '/health/ready', timeoutMs = 20_000, pollMs = 2): Promise<number> {
  const start = performance.now()
  for (;;) {
    if (child.proc.exitCode !== null) throw new Error(`server exited with code ${child.proc.exitCode}:\n${tail(child.logFile)}`)
    try {
      const r = await fetch(child.url + path)
      if (r.status === 200) {
        await r.arrayBuffer()
        return performance.now() - start
      }
    } catch {}
    if (performance.now() - start > timeoutMs) throw new Error(`server not ready after ${timeoutMs} ms:\n${tail(child.logFile)}`)
    await Bun.sleep(pollMs)
  }
}

export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Runs a command to completion; throws with its output when it fails. */
export async function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<string> {
  const p = Bun.spawn(cmd, { cwd: opts.cwd, env: opts.env ?? process.env, stdout: 'pipe', stderr: 'pipe' })
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()])
  const code = await p.exited
  if (code !== 0) throw new Error(`${cmd.join(' ')} failed (${code}):\n${out}\n${err}`)
  return out
}
