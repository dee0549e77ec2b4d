/** What the figures were measured on: cores, CPU model, memory, Bun and kernel versions. */
import { readFileSync } from 'node:fs'
import { availableParallelism, totalmem, release } from 'node:os'

export interface Machine {
  nproc: number
  cpu: string
  memory: string
  bun: string
  kernel: string
  load: string
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    return m?.[1]?.trim() ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

/** Describes this machine (load average included: a busy machine gives noisy figures). */
export function describeMachine(): Machine {
  let load = 'unknown'
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  } catch {}
  return {
    nproc: availableParallelism(),
    cpu: cpuModel(),
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    bun: Bun.version,
    kernel: release(),
    load,
  }
}
