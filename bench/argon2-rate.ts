/**
 * The raw rate of password verifications on one core: Bun.password.verifySync in a loop against a real
 * hash from the bench database (the server's own parameters), for `BENCH_SECONDS` seconds. The harness runs
 * it under `taskset -c 0`. When the build's hasher is @node-rs/argon2 (installed), it is measured as well.
 * Prints one JSON line: {"bun": rate, "nodeRs"?: rate, "params": "m=...,t=...,p=..."}.
 */
const hash = process.env.BENCH_HASH ?? ''
const password = process.env.BENCH_PASSWORD ?? ''
const seconds = Number(process.env.BENCH_SECONDS ?? 3)
if (!hash.startsWith('$argon2')) throw new Error('BENCH_HASH must be an argon2 PHC string')

function rate(verify: () => unknown): number {
  verify()
  let n = 0
  const start = performance.now()
  const end = start + seconds * 1000
  while (performance.now() < end) {
    verify()
    n++
  }
  return n / ((performance.now() - start) / 1000)
}

const out: Record<string, unknown> = { params: /\$(m=[^$]+)\$/.exec(hash)?.[1] ?? 'unknown' }
out.bunVerifies = Bun.password.verifySync(password, hash)
// BENCH_NODE_RS_ONLY=1 (the rates taken just before and after a login run): @node-rs/argon2 only.
out.bun = process.env.BENCH_NODE_RS_ONLY === '1' ? 0 : rate(() => Bun.password.verifySync(password, hash))
try {
  // Resolved at run time: the package is not a dependency of every build.
  const name = '@node-rs/argon2'
  const mod = (await import(name)) as { verifySync(hash: string, password: string): boolean }
  out.nodeRs = rate(() => mod.verifySync(hash, password))
} catch {}
process.stdout.write(`${JSON.stringify(out)}\n`)
export {}
