/**
 * Separate network hosts on one machine, for tests that run several Bulwark instances the way a
 * deployment does: each instance in its own network namespace (`ip netns`), joined to the host by a veth
 * pair, so it has its own address and port space and reaches shared services over a network link, not
 * over loopback. Addresses come from 10.213.0.0/16: one free /24 per run, a /30 per host (host side .1,
 * namespace side .2). Namespaces are named `bwk-mh-<pid of the test process>-<label>`, so a run that
 * died without cleaning up is recognised (its pid is gone) and swept by the next one.
 *
 * PostgreSQL and Redis listen on the host's loopback only; `startForwarder` runs multihost-forwarder.ts
 * on the host side of each veth pair to relay their ports to loopback.
 */
import type { Subprocess } from 'bun'
import { join } from 'node:path'

const PREFIX = 'bwk-mh-'
const OCTETS = '10.213'

export interface Host {
  label: string
  /** Network namespace name. */
  ns: string
  /** Host side of the veth pair (an interface in the root namespace). */
  hostIf: string
  /** Address of the host side: what the instance inside dials to reach the host (the forwarder). */
  hostIp: string
  /** Address inside the namespace: where the instance listens and the test client connects. */
  nsIp: string
}

function run(cmd: string[]): { ok: boolean; out: string; err: string } {
  const p = Bun.spawnSync(cmd, { stdout: 'pipe', stderr: 'pipe' })
  return { ok: p.exitCode === 0, out: p.stdout.toString(), err: p.stderr.toString().trim() }
}

function ip(...args: string[]): string {
  const r = run(['ip', ...args])
  if (!r.ok) throw new Error(`ip ${args.join(' ')}: ${r.err}`)
  return r.out
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Why namespaces cannot be made here, or undefined when they can (tried once, for real). */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`
  if (Bun.which('ip') === null) return 'no `ip` command (iproute2)'
  if (process.getuid?.() !== 0) return 'not root'
  const probe = `${PREFIX}${process.pid}-probe`
  const r = run(['ip', 'netns', 'add', probe])
  if (!r.ok) return `ip netns add failed: ${r.err.slice(0, 120)}`
  run(['ip', 'netns', 'del', probe])
  return undefined
}

function namespaces(): string[] {
  return run(['ip', 'netns', 'list']).out.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(PREFIX))
}

/** Deletes namespaces (and ends the processes left inside them) of earlier runs whose test process is gone. */
export function sweepStale(): string[] {
  const swept: string[] = []
  for (const ns of namespaces()) {
    const pid = Number(/^bwk-mh-(\d+)-/.exec(ns)?.[1])
    if (!pid || alive(pid)) continue
    for (const p of run(['ip', 'netns', 'pids', ns]).out.split('\n').map(Number).filter((n) => n > 0)) {
      try {
        process.kill(p, 'SIGKILL')
      } catch {}
    }
    run(['ip', 'netns', 'del', ns])
    swept.push(ns)
  }
  return swept
}

/** A /24 of 10.213.0.0/16 that no interface of the root namespace uses. */
function freeBlock(): number {
  const used = new Set<number>()
  for (const m of ip('-4', '-o', 'addr', 'show').matchAll(/inet 10\.213\.(\d+)\./g)) used.add(Number(m[1]))
  const free = Array.from({ length: 254 }, (_, i) => i + 1).filter((b) => !used.has(b))
  if (free.length === 0) throw new Error('no free /24 left in 10.213.0.0/16')
  return free[Math.floor(Math.random() * free.length)]!
}

/** Separate hosts with their own addresses; `down()` removes them (idempotent, synchronous). */
export class Hosts {
  readonly hosts: Host[] = []
  private readonly exitHook = () => this.down()

  constructor(labels: string[]) {
    sweepStale()
    const block = freeBlock()
    process.on('exit', this.exitHook)
    try {
      labels.forEach((label, k) => {
        if (!/^[a-z0-9]{1,4}$/.test(label)) throw new Error(`host label ${label}: 1-4 lower-case letters or digits`)
        const h: Host = {
          label,
          ns: `${PREFIX}${process.pid}-${label}`,
          hostIf: `bwkmh${block}${label}`,
          hostIp: `${OCTETS}.${block}.${4 * k + 1}`,
          nsIp: `${OCTETS}.${block}.${4 * k + 2}`,
        }
        ip('netns', 'add', h.ns)
        this.hosts.push(h)
        const peer = `${h.hostIf}p`
        ip('link', 'add', h.hostIf, 'type', 'veth', 'peer', 'name', peer)
        ip('link', 'set', peer, 'netns', h.ns)
        ip('-n', h.ns, 'link', 'set', peer, 'name', 'eth0')
        ip('addr', 'add', `${h.hostIp}/30`, 'dev', h.hostIf)
        ip('-n', h.ns, 'addr', 'add', `${h.nsIp}/30`, 'dev', 'eth0')
        ip('link', 'set', h.hostIf, 'up')
        ip('-n', h.ns, 'link', 'set', 'eth0', 'up')
        ip('-n', h.ns, 'link', 'set', 'lo', 'up')
      })
    } catch (e) {
      this.down()
      throw e
    }
  }

  get(label: string): Host {
    const h = this.hosts.find((x) => x.label === label)
    if (!h) throw new Error(`no host ${label}`)
    return h
  }

  /** Ends whatever still runs inside, deletes the namespaces (which removes their veth pairs). */
  down(): void {
    process.off('exit', this.exitHook)
    for (const h of this.hosts.splice(0)) {
      for (const p of run(['ip', 'netns', 'pids', h.ns]).out.split('\n').map(Number).filter((n) => n > 0)) {
        try {
          process.kill(p, 'SIGKILL')
        } catch {}
      }
      run(['ip', 'netns', 'del', h.ns])
      run(['ip', 'link', 'del', h.hostIf]) // normally gone with the namespace already
    }
  }
}

/** Settles like `p`, or rejects with `onTimeout()` after `ms` (the timer is cleared either way). */
async function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: Timer | undefined
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(onTimeout()), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

export interface Forwarder {
  stop(): Promise<void>
}

/**
 * Starts multihost-forwarder.ts with `listen=target` pairs (`10.213.7.1:5432=127.0.0.1:5432`), at a raised
 * priority (`nice -n -10`; we are root here): it stands in for the network between the hosts, which a
 * busy machine does not starve. At normal priority, on a loaded 2-core machine, it was seen holding a
 * Redis message for one host while relaying the next packets for the other, for up to 165 ms.
 */
export async function startForwarder(pairs: string[]): Promise<Forwarder> {
  const proc = Bun.spawn(['nice', '-n', '-10', process.execPath, join(import.meta.dir, 'multihost-forwarder.ts'), ...pairs], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' })
  const exitHook = () => proc.kill('SIGKILL')
  process.on('exit', exitHook)
  const reader = proc.stdout.getReader()
  let out = ''
  const ready = (async () => {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`forwarder exited (${await proc.exited}): ${out}${await new Response(proc.stderr).text()}`)
      out += new TextDecoder().decode(value)
      if (out.includes('ready\n')) return
    }
  })()
  await withTimeout(ready, 10_000, () => {
    proc.kill('SIGKILL')
    return new Error('forwarder did not start in 10 s')
  })
  reader.releaseLock()
  return {
    stop: async () => {
      process.off('exit', exitHook)
      proc.kill('SIGTERM')
      await proc.exited
    },
  }
}

export interface Instance {
  host: Host
  base: string
  proc: Subprocess<'ignore', 'pipe', 'pipe'>
  stdout(): string
  stderr(): string
  /** Sends a signal (default SIGTERM) and waits for the process to end; returns its exit code or signal name. */
  stop(signal?: NodeJS.Signals): Promise<number | string>
}

async function drain(stream: ReadableStream<Uint8Array>, onText: (t: string) => void) {
  const reader = stream.getReader()
  const decoder = new TextDecoder()
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    onText(decoder.decode(value, { stream: true }))
  }
}

/**
 * Runs `binary serve` inside the host's namespace (`ip netns exec` execs, so the pid is the server's
 * own), listening on the namespace address, and waits for its "bulwark listening" log line.
 */
export async function startIn(host: Host, binary: string, env: Record<string, string>, cwd: string, port = 3000): Promise<Instance> {
  const proc = Bun.spawn(['ip', 'netns', 'exec', host.ns, binary, 'serve'], {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env, BULWARK_HOST: host.nsIp, BULWARK_PORT: String(port) },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  let out = ''
  let err = ''
  void drain(proc.stderr, (t) => (err += t))
  const listening = new Promise<void>((resolve, reject) => {
    void (async () => {
      await drain(proc.stdout, (t) => {
        out += t
        if (out.includes('"msg":"bulwark listening"')) resolve()
      })
      reject(new Error(`instance ${host.label} exited before listening (${proc.exitCode ?? proc.signalCode}): ${out}\n${err}`))
    })()
  })
  try {
    await withTimeout(listening, 15_000, () => new Error(`instance ${host.label} did not start in 15 s: ${out}\n${err}`))
  } catch (e) {
    proc.kill('SIGKILL')
    throw e
  }
  return {
    host,
    base: `http://${host.nsIp}:${port}`,
    proc,
    stdout: () => out,
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      await proc.exited
      return proc.signalCode ?? proc.exitCode ?? -1
    },
  }
}
