/**
 * Scores Bulwark with the MDN HTTP Observatory rules (@mdn/mdn-http-observatory), against a real socket.
 *
 * The package is not a project dependency (233 packages, a postinstall that downloads the HSTS preload
 * list); install it into a scratch folder:
 *   mkdir -p /tmp/obs && cd /tmp/obs && npm init -y && npm install --ignore-scripts @mdn/mdn-http-observatory
 * then: `bun run scripts/observatory.ts` (OBSERVATORY_DIR overrides /tmp/obs).
 *
 * Its CLI `scan(hostname)` only takes a hostname (port 80/443, path /) and refuses any status other than
 * 2xx/3xx/401/403, so this script does what `scan` does with the package's own parts: `retrieve()` with
 * `httpPort` and `path`, every test in `ALL_TESTS`, and the same grading. The HTTPS-only rules (HSTS, the
 * http→https redirection) cannot pass over plain HTTP and are reported as such.
 */
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const OBSERVATORY_DIR = process.env.OBSERVATORY_DIR ?? '/tmp/obs'
const PKG = join(OBSERVATORY_DIR, 'node_modules', '@mdn', 'mdn-http-observatory')

/** True when the Observatory package is installed where this script looks. */
export const observatoryInstalled = (): boolean => existsSync(join(PKG, 'src', 'constants.js'))

/** Rules that need HTTPS on the scanned host; over plain HTTP they cannot pass. */
export const HTTPS_ONLY = new Set(['strict-transport-security', 'redirection'])

export interface RuleResult {
  name: string
  pass: boolean
  result: string
  scoreModifier: number
}

export interface PageScore {
  path: string
  status: number
  score: number
  grade: string
  rules: RuleResult[]
}

/** Runs every Observatory rule against `http://host:port<path>`, graded as the package's `scan` grades. */
export async function scorePage(host: string, port: number, path: string): Promise<PageScore> {
  // `--ignore-scripts` skips the postinstall that downloads Chromium's HSTS preload list; a loopback
  // address is on no preload list, so an empty one gives the same verdicts here.
  const preload = join(PKG, 'conf', 'hsts-preload.json')
  if (!existsSync(preload)) writeFileSync(preload, '{}')
  const { retrieve } = await import(join(PKG, 'src', 'retriever', 'retriever.js'))
  const { ALL_TESTS } = await import(join(PKG, 'src', 'constants.js'))
  const { getGradeForScore, getScoreModifier } = await import(join(PKG, 'src', 'grader', 'grader.js'))
  const { MINIMUM_SCORE_FOR_EXTRA_CREDIT } = await import(join(PKG, 'src', 'grader', 'charts.js'))
  // httpsPort: a closed port, so the HTTPS attempt fails fast instead of waiting on 443.
  const r = await retrieve(host, { httpPort: port, httpsPort: 1, path })
  if (!r.responses.auto) throw new Error(`no response from http://${host}:${port}${path}`)
  let withExtra = 100
  let uncurved = 100
  const rules: RuleResult[] = []
  for (const test of ALL_TESTS as ((r: unknown) => { pass: boolean; result: string; constructor: { name: string } })[]) {
    const out = test(r)
    const mod = getScoreModifier(out.result) as number
    withExtra += mod
    if (mod < 0) uncurved += mod
    rules.push({ name: out.constructor.name, pass: out.pass, result: out.result, scoreModifier: mod })
  }
  const final = getGradeForScore(uncurved >= MINIMUM_SCORE_FOR_EXTRA_CREDIT ? withExtra : uncurved) as { grade: string; score: number }
  return { path, status: r.responses.auto.status, score: final.score, grade: final.grade, rules }
}

if (import.meta.main) {
  if (!observatoryInstalled()) {
    console.error(`@mdn/mdn-http-observatory not found under ${OBSERVATORY_DIR}; see the header of this file`)
    process.exit(1)
  }
  const { testConfig } = await import('../src/config')
  const { startServer } = await import('../src/server')
  const running = await startServer(testConfig({ BULWARK_PORT: '0', BULWARK_HOST: '127.0.0.1' }))
  try {
    const port = running.server.port!
    let failed = 0
    for (const path of ['/', '/health/live', '/docs']) {
      const s = await scorePage('127.0.0.1', port, path)
      console.log(`${path} (HTTP ${s.status}): score ${s.score}, grade ${s.grade}`)
      for (const rule of s.rules) {
        const note = rule.pass ? 'pass' : HTTPS_ONLY.has(rule.name) ? 'fail (needs HTTPS)' : 'FAIL'
        if (!rule.pass && !HTTPS_ONLY.has(rule.name)) failed++
        console.log(`  ${rule.name.padEnd(28)} ${note.padEnd(20)} ${rule.result} (${rule.scoreModifier >= 0 ? '+' : ''}${rule.scoreModifier})`)
      }
    }
    process.exitCode = failed ? 1 : 0
  } finally {
    await running.stop()
  }
}
