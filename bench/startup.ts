/**
 * Start-up and idle memory of one or more compiled binaries, alternated: `bun bench/startup.ts BIN [BIN2 …] [--runs N]`.
 * Each start is pinned to core 0 on one fresh data folder per binary (the first start migrates it and is not
 * counted), timed from spawn to the first 200 of /health/ready, then the RSS (anonymous and file-backed) is read
 * 2 s later. For before/after pairs of builds (`bun run build` and copy dist/bulwark aside); `bun run bench
 * --only startup` measures the current build alone. Not a test: nothing asserts time.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const args = process.argv.slice(2)
const runsAt = args.indexOf('--runs')
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 7
const bins = args.filter((a, i) => !a.startsWith('--') && i !== runsAt + 1)
if (bins.length === 0) throw new Error('usage: bun bench/startup.ts BIN [BIN2 …] [--runs N]')

const env = { PATH: process.env.PATH ?? '', BULWARK_ENV: 'production', BULWARK_ALLOW_HTTP: '1', BULWARK_SECRET: 'q7Zp2Lr9Kx4Vn8Tb1Wm6Yc3Hd5Fg0Js2Ae7Ru9Io4Pl6', BULWARK_METRICS_PUBLIC: '1', BULWARK_UPLOADS_SCAN: 'off', BULWARK_LOG_LEVEL: 'warn' }
const dirs = new Map(bins.map((b) => [b, mkdtempSync(join(tmpdir(), 'bulwark-startup-'))]))
const times = new Map(bins.map((b) => [b, [] as number[]]))
const rss = new Map(bins.map((b) => [b, [] as string[]]))
const mib = (status: string, key: string) => Number(status.match(new RegExp(`${key}:\\s+(\\d+)`))![1]) / 1024

async function once(bin: string): Promise<{ ms: number; rss: string }> {
  const port = 20000 + Math.floor(Math.random() * 20000)
  const t0 = performance.now()
  const p = Bun.spawn(['taskset', '-c', '0', bin, 'serve'], { env: { ...env, BULWARK_DATA_DIR: dirs.get(bin)!, BULWARK_PORT: String(port) }, stdout: 'ignore', stderr: 'ignore' })
  for (;;) {
    if (p.exitCode !== null) throw new Error(`${bin} exited with ${p.exitCode}`)
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health/ready`)
      await r.arrayBuffer()
      if (r.status === 200) break
    } catch {}
    await Bun.sleep(1)
  }
  const ms = performance.now() - t0
  await Bun.sleep(2000)
  const st = readFileSync(`/proc/${p.pid}/status`, 'utf8')
  p.kill('SIGTERM')
  await p.exited
  return { ms, rss: `${mib(st, 'VmRSS').toFixed(1)} (anonymous ${mib(st, 'RssAnon').toFixed(1)}, file ${mib(st, 'RssFile').toFixed(1)})` }
}

for (const b of bins) await once(b) // migrates each folder
for (let i = 0; i < runs; i++) {
  for (const b of bins) {
    const r = await once(b)
    times.get(b)!.push(r.ms)
    rss.get(b)!.push(r.rss)
  }
}
for (const b of bins) {
  const t = times.get(b)!
  const sorted = [...t].sort((x, y) => x - y)
  console.log(`${b}: start-up to ready, median of ${runs}: ${sorted[Math.floor(runs / 2)]!.toFixed(0)} ms (${t.map((x) => x.toFixed(0)).join(', ')}); idle RSS MiB ${rss.get(b)![rss.get(b)!.length - 1]}`)
  rmSync(dirs.get(b)!, { recursive: true, force: true })
}
