/**
 * `bun run audit` (scripts/audit.ts) against a local stand-in for the registry's bulk advisory endpoint:
 * real `bun audit` sends the locked packages there; the stand-in answers what a registry would.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const ROOT = join(import.meta.dir, '..', '..')
let answer: () => Response = () => Response.json({})
let asked: Record<string, string[]> | undefined
const registry = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch: async (req) => {
    if (req.method === 'POST' && new URL(req.url).pathname === '/-/npm/v1/security/advisories/bulk') {
      const raw = new Uint8Array(await req.arrayBuffer())
      const text = req.headers.get('content-encoding') === 'gzip' ? new TextDecoder().decode(Bun.gunzipSync(raw)) : new TextDecoder().decode(raw)
      asked = JSON.parse(text)
      return answer()
    }
    return new Response(null, { status: 405 })
  },
})
const dir = mkdtempSync(join(tmpdir(), 'bw-audit-'))
const exceptions = join(dir, 'exceptions.json')
afterAll(() => {
  registry.stop(true)
  rmSync(dir, { recursive: true, force: true })
})
beforeAll(() => writeFileSync(exceptions, '[]'))

async function audit(exceptionList: unknown[] = []) {
  writeFileSync(exceptions, JSON.stringify(exceptionList))
  const p = Bun.spawn(['bun', 'run', 'audit'], {
    cwd: ROOT,
    env: { ...process.env, NPM_CONFIG_REGISTRY: `http://127.0.0.1:${registry.port}/`, BULWARK_AUDIT_EXCEPTIONS: exceptions },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()])
  return { code, out: out + err }
}

const advisory = (severity: string, ghsa = 'GHSA-aaaa-bbbb-cccc') => ({ id: 1100001, url: `https://github.com/advisories/${ghsa}`, title: 'Test advisory', severity, vulnerable_versions: '<99.0.0', cwe: [], cvss: { score: 8, vectorString: null } })

describe('dependency audit', () => {
  test('no advisories: exit 0, and the locked packages were sent to the endpoint', async () => {
    answer = () => Response.json({})
    const r = await audit()
    expect(r.code).toBe(0)
    expect(r.out).toContain('0 advisories')
    expect(asked?.pino).toBeDefined()
    expect(asked?.elysia).toBeDefined()
  }, 30_000)

  test('a high or critical advisory without exception fails (exit 1) and is named', async () => {
    for (const sev of ['high', 'critical']) {
      answer = () => Response.json({ pino: [advisory(sev)] })
      const r = await audit()
      expect(r.code).toBe(1)
      expect(r.out).toContain(`BLOCKING ${sev} pino GHSA-aaaa-bbbb-cccc`)
    }
  }, 30_000)

  test('moderate and low advisories are listed but do not fail', async () => {
    answer = () => Response.json({ pino: [advisory('moderate'), advisory('low', 'GHSA-dddd-eeee-ffff')] })
    const r = await audit()
    expect(r.code).toBe(0)
    expect(r.out).toContain('2 advisories, 0 high/critical without exception')
  }, 30_000)

  test('a recorded exception (id, package, reason) lets that advisory pass, and only that one', async () => {
    answer = () => Response.json({ pino: [advisory('high')], elysia: [advisory('critical', 'GHSA-1111-2222-3333')] })
    const onlyPino = await audit([{ id: 'GHSA-aaaa-bbbb-cccc', package: 'pino', reason: 'only reachable through an option we never set' }])
    expect(onlyPino.code).toBe(1)
    expect(onlyPino.out).toContain('excepted: only reachable through an option we never set')
    expect(onlyPino.out).toContain('BLOCKING critical elysia GHSA-1111-2222-3333')
    // The same id on another package is no exception.
    const wrongPkg = await audit([{ id: 'GHSA-aaaa-bbbb-cccc', package: 'jose', reason: 'recorded against the wrong package' }])
    expect(wrongPkg.code).toBe(1)
    const both = await audit([
      { id: 'GHSA-aaaa-bbbb-cccc', package: 'pino', reason: 'only reachable through an option we never set' },
      { id: 'GHSA-1111-2222-3333', package: 'elysia', reason: 'fixed by our own body parser; upgrade tracked' },
    ])
    expect(both.code).toBe(0)
  }, 30_000)

  test('an exception without a reason is refused (the audit does not run: exit 2)', async () => {
    answer = () => Response.json({})
    const r = await audit([{ id: 'GHSA-aaaa-bbbb-cccc', package: 'pino' }])
    expect(r.code).toBe(2)
    expect(r.out).toContain('AUDIT NOT RUN')
  }, 30_000)

  test('a registry without the advisory endpoint is "AUDIT NOT RUN" (exit 2), never a pass', async () => {
    answer = () => new Response(null, { status: 405 })
    const r = await audit()
    expect(r.code).toBe(2)
    expect(r.out).toContain('AUDIT NOT RUN')
    expect(r.out).toContain('405')
  }, 30_000)
})
