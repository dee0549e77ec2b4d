/**
 * Argon2id throughput: Bun.password against @node-rs/argon2 at OWASP parameters (m=19456 KiB, t=2, p=1).
 * Run under Bun: `bun run bench/argon2.ts`; inside a compiled binary:
 * `bun build bench/argon2.ts --compile --outfile /tmp/argon2-bench && /tmp/argon2-bench`.
 * Prints hashes/second and verifies/second, sequential and with 2 in flight, and whether each library
 * verifies the other's hashes. @node-rs/argon2 is optional: without it only Bun.password is measured.
 */
const M = Number(process.env.ARGON2_M ?? 19456)
const T = Number(process.env.ARGON2_T ?? 2)
const N = Number(process.env.ARGON2_N ?? 30)
const PW = 'correct horse battery staple'

interface Lib {
  name: string
  hash(pw: string): Promise<string>
  verify(hash: string, pw: string): Promise<boolean>
}

const bun: Lib = {
  name: 'Bun.password',
  hash: (pw) => Bun.password.hash(pw, { algorithm: 'argon2id', memoryCost: M, timeCost: T }),
  verify: (hash, pw) => Bun.password.verify(pw, hash),
}

async function nodeRs(): Promise<Lib | string> {
  try {
    const a = await import('@node-rs/argon2')
    return {
      name: '@node-rs/argon2',
      hash: (pw) => a.hash(pw, { algorithm: 2 /* Argon2id; the const enum cannot be read under isolatedModules */, memoryCost: M, timeCost: T, parallelism: 1 }),
      verify: (hash, pw) => a.verify(hash, pw),
    }
  } catch (e) {
    return `@node-rs/argon2 unavailable: ${(e as Error).message.split('\n')[0]}`
  }
}

/** Operations per second of `op`, run `n` times with `concurrency` in flight. */
async function rate(op: () => Promise<unknown>, n: number, concurrency: number): Promise<number> {
  await op() // warm-up
  const start = performance.now()
  let next = 0
  const worker = async () => {
    while (next++ < n) await op()
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return n / ((performance.now() - start) / 1000)
}

const libs: Lib[] = [bun]
const other = await nodeRs()
if (typeof other === 'string') console.log(other)
else libs.push(other)

console.log(`argon2id m=${M} t=${T} p=1, ${N} operations each, ${Bun.version}${import.meta.path.includes('$bunfs') ? ' (compiled binary)' : ' (bun run)'}`)
for (const lib of libs) {
  const h = await lib.hash(PW)
  const hs1 = await rate(() => lib.hash(PW), N, 1)
  const hs2 = await rate(() => lib.hash(PW), N, 2)
  const vs1 = await rate(() => lib.verify(h, PW), N, 1)
  console.log(`${lib.name.padEnd(16)} hash ${hs1.toFixed(1)}/s (2 in flight ${hs2.toFixed(1)}/s)  verify ${vs1.toFixed(1)}/s`)
}
if (libs.length === 2) {
  const [a, b] = libs as [Lib, Lib]
  const ha = await a.hash(PW)
  const hb = await b.hash(PW)
  console.log(`${b.name} verifies ${a.name} hash: ${await b.verify(ha, PW)}; ${a.name} verifies ${b.name} hash: ${await a.verify(hb, PW)}`)
  console.log(`${a.name} hash: ${ha.slice(0, 40)}…  ${b.name} hash: ${hb.slice(0, 40)}…`)
}
