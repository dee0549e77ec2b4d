/**
 * One registry of problem codes (src/lib/error-codes.ts), documented in the README's "Error codes" table.
 * The type check already refuses an unregistered code; this test also catches a code that reaches
 * AppError through a cast, a registry entry the README does not describe, and a status that disagrees.
 */
import { describe, expect, test } from 'bun:test'
import { Glob } from 'bun'
import { join } from 'node:path'
import { ERROR_CODES } from '../src/lib/error-codes'

const ROOT = join(import.meta.dir, '..')

/** code → statuses from the README table under "### Error codes". */
async function readmeTable(): Promise<Map<string, number[]>> {
  const readme = await Bun.file(join(ROOT, 'README.md')).text()
  const start = readme.indexOf('### Error codes')
  expect(start).toBeGreaterThan(0)
  const section = readme.slice(start, readme.indexOf('\n#', start + 5))
  const rows = new Map<string, number[]>()
  for (const m of section.matchAll(/^\| `([a-z_]+)` \| ([0-9, ]+) \|/gm)) rows.set(m[1]!, m[2]!.split(',').map((x) => Number(x.trim())))
  return rows
}

/** Every code the sources emit as a literal, with the status when it is written next to it. */
async function emittedCodes(): Promise<{ code: string; status?: number; where: string }[]> {
  const out: { code: string; status?: number; where: string }[] = []
  const patterns: [RegExp, number | undefined][] = [
    [/\bnew AppError\(\s*(\d{3}),\s*'([a-z_]+)'/g, undefined],
    [/\bproblemResponse\(\s*(\d{3}),\s*'([a-z_]+)'/g, undefined],
    [/\bbadRequest\(\s*()'([a-z_]+)'/g, 400],
    [/\bunauthorized\(\s*()'([a-z_]+)'/g, 401],
    [/\bunprocessable\(\s*()'([a-z_]+)'/g, 422],
    [/\bforbidden\([^()]*?,\s*()'([a-z_]+)'\)/g, 403],
    [/\bconflict\((?:[^()]|\([^()]*\))*?,\s*()'([a-z_]+)'\)/g, 409],
  ]
  for await (const file of new Glob('src/**/*.ts').scan(ROOT)) {
    if (file.endsWith('error-codes.ts')) continue
    const text = await Bun.file(join(ROOT, file)).text()
    for (const [re, fixed] of patterns) {
      for (const m of text.matchAll(re)) out.push({ code: m[2]!, status: fixed ?? (m[1] ? Number(m[1]) : undefined), where: file })
    }
  }
  return out
}

describe('error-code registry', () => {
  test('the README table lists exactly the registry, with the same statuses', async () => {
    const table = await readmeTable()
    expect([...table.keys()].sort()).toEqual(Object.keys(ERROR_CODES).sort())
    for (const [code, v] of Object.entries(ERROR_CODES)) expect(table.get(code), code).toEqual([...v.status])
  })

  test('every code the source emits is in the README table, with a registered status', async () => {
    const table = await readmeTable()
    const emitted = await emittedCodes()
    expect(emitted.length).toBeGreaterThan(60)
    const unlisted = emitted.filter((e) => !table.has(e.code)).map((e) => `${e.code} (${e.where})`)
    expect(unlisted).toEqual([])
    const wrongStatus = emitted.filter((e) => e.status !== undefined && !table.get(e.code)!.includes(e.status)).map((e) => `${e.code} ${e.status} (${e.where})`)
    expect(wrongStatus).toEqual([])
    // Each registered code is really sent somewhere (or is the fallback code of the error handler).
    const sent = new Set(emitted.map((e) => e.code))
    const neverSent = Object.keys(ERROR_CODES).filter((c) => !sent.has(c) && !['unauthorized', 'forbidden', 'not_found', 'conflict', 'bad_request'].includes(c))
    expect(neverSent).toEqual([])
  })

  test('mfa_required is not in the registry: nothing sends it (README says why)', async () => {
    expect(Object.keys(ERROR_CODES)).not.toContain('mfa_required')
    const readme = await Bun.file(join(ROOT, 'README.md')).text()
    expect(readme).toContain('`mfa_required`, listed in the v1 contract, is not sent')
  })
})
