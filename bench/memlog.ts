/**
 * A preload for memory experiments (not part of the server): once a second it appends one JSON line to $MEMLOG
 * (default bulwark-memlog.txt in the temporary folder) with process.memoryUsage() (rss, heapTotal, heapUsed, external), bun:jsc
 * memoryUsage(), and RssAnon, RssFile and Threads from /proc/self/status. The compiled binary loads it through
 * BUN_OPTIONS: `BENCH_SERVER_ENV="BUN_OPTIONS=--preload=$PWD/bench/memlog.ts MEMLOG=/tmp/memlog.txt" bun run bench --soak`,
 * then `bun bench/memlog-report.ts /tmp/memlog.txt`. Every server the run starts appends to the same file; the
 * report reads the last one's lines. Not a test.
 */
import { memoryUsage as mi } from 'bun:jsc'
import { appendFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
const out = process.env.MEMLOG ?? join(tmpdir(), 'bulwark-memlog.txt')
setInterval(() => {
  try {
    sample()
  } catch {} // a reading that fails (a full disk) must not end the server it measures
}, 1000).unref()

function sample(): void {
  const m = process.memoryUsage()
  const a = mi()
  const st = readFileSync('/proc/self/status', 'utf8')
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? 0)
  appendFileSync(out, JSON.stringify({ t: Date.now(), rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, miCurrent: a.current, miCommit: a.currentCommit, anonKb: kb('RssAnon'), fileKb: kb('RssFile'), threads: kb('Threads') }) + '\n')
}
