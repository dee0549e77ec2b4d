/**
 * Dependency vulnerability audit: `bun audit --json` against the configured registry's bulk advisory
 * endpoint, failing on high and critical advisories that have no recorded exception in
 * `audit-exceptions.json` (`[{ "id": "GHSA-… or numeric id", "package": "name", "reason": "why it does not
 * apply / what is done instead" }]`).
 *
 * Exit codes: 0 no unexcepted high/critical advisory; 1 at least one (listed); 2 the audit could not run
 * (registry without an advisory endpoint, network error, unparsable answer): said on stderr as
 * "AUDIT NOT RUN", never a silent pass. `.ci/run` decides what exit 2 means for CI.
 *
 * BULWARK_AUDIT_EXCEPTIONS overrides the exceptions file (tests); the registry is the one bun uses
 * (NPM_CONFIG_REGISTRY or bunfig.toml).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

interface Advisory {
  id: number | string
  url?: string
  title?: string
  severity?: string
  vulnerable_versions?: string
}
interface Exception {
  id: string
  package: string
  reason: string
}

const ROOT = join(import.meta.dir, '..')
const BLOCKING = new Set(['high', 'critical'])

/** The GHSA id of an advisory (from its URL), else its numeric id, as a string. */
export const advisoryId = (a: Advisory): string => /GHSA-[\w-]+/i.exec(a.url ?? '')?.[0] ?? String(a.id)

export function loadExceptions(file: string): Exception[] {
  const list = JSON.parse(readFileSync(file, 'utf8')) as unknown
  if (!Array.isArray(list)) throw new Error(`${file}: expected an array`)
  for (const e of list as Exception[]) {
    if (!e || typeof e.id !== 'string' || typeof e.package !== 'string' || typeof e.reason !== 'string' || e.reason.trim().length < 10) {
      throw new Error(`${file}: every exception needs id, package and a reason (got ${JSON.stringify(e)})`)
    }
  }
  return list as Exception[]
}

async function main(): Promise<number> {
  const exceptionsFile = process.env.BULWARK_AUDIT_EXCEPTIONS ?? join(ROOT, 'audit-exceptions.json')
  let exceptions: Exception[]
  try {
    exceptions = loadExceptions(exceptionsFile)
  } catch (e) {
    console.error(`AUDIT NOT RUN: ${(e as Error).message}`)
    return 2
  }
  const p = Bun.spawn(['bun', 'audit', '--json'], { cwd: ROOT, stdout: 'pipe', stderr: 'pipe', env: process.env })
  const [, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()])
  let report: Record<string, Advisory[]>
  try {
    const parsed = JSON.parse(out.trim() || 'null') as unknown
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('no report')
    report = parsed as Record<string, Advisory[]>
  } catch {
    const why = (err.trim() || out.trim() || `bun audit exited ${p.exitCode} with no output`).split('\n').slice(0, 3).join(' | ')
    console.error(`AUDIT NOT RUN: the registry's advisory endpoint gave no report: ${why}`)
    return 2
  }
  const blocking: string[] = []
  const excepted: string[] = []
  let total = 0
  for (const [pkg, advisories] of Object.entries(report)) {
    if (!Array.isArray(advisories)) continue
    for (const a of advisories) {
      total++
      const id = advisoryId(a)
      const sev = (a.severity ?? 'unknown').toLowerCase()
      const line = `${sev} ${pkg} ${id}: ${a.title ?? ''} (${a.vulnerable_versions ?? '?'}) ${a.url ?? ''}`.trim()
      if (!BLOCKING.has(sev)) continue
      const ex = exceptions.find((e) => e.package === pkg && (e.id === id || e.id === String(a.id)))
      if (ex) excepted.push(`${line}\n    excepted: ${ex.reason}`)
      else blocking.push(line)
    }
  }
  console.log(`dependency audit: ${total} advisories, ${blocking.length} high/critical without exception, ${excepted.length} excepted`)
  for (const l of excepted) console.log(`  ${l}`)
  for (const l of blocking) console.error(`  BLOCKING ${l}`)
  if (blocking.length > 0) console.error('Fix (bun audit fix) or record an exception with a reason in audit-exceptions.json.')
  return blocking.length > 0 ? 1 : 0
}

if (import.meta.main) process.exit(await main())
