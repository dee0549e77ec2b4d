/**
 * The one-way flow of ARCHITECTURE (the README's "Design"): SQL lives only in module services and stores.
 * Controllers (`src/modules/<feature>/index.ts`), plugins and `src/lib` import neither drizzle nor a table;
 * `src/lib` and `src/db` never import a module. Each rule names the files that break it.
 */
import { describe, expect, test } from 'bun:test'
import { Glob } from 'bun'
import { join } from 'node:path'

const ROOT = join(import.meta.dir, '..')
const files = (pattern: string) => [...new Glob(pattern).scanSync({ cwd: ROOT })].sort()
const importsOf = async (file: string) => [...(await Bun.file(join(ROOT, file)).text()).matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!)
const SQL_IMPORT = /^drizzle-orm(\/|$)|\/db\/(tables|schema|pg\/schema)$/

async function offenders(pattern: string, bad: RegExp): Promise<string[]> {
  const out: string[] = []
  for (const f of files(pattern)) for (const i of await importsOf(f)) if (bad.test(i)) out.push(`${f} imports ${i}`)
  return out
}

describe('one-way flow', () => {
  test('the rules see the files they are about', () => {
    expect(files('src/lib/**/*.ts').length).toBeGreaterThan(20)
    expect(files('src/plugins/**/*.ts').length).toBeGreaterThan(5)
    expect(files('src/modules/*/index.ts').length).toBeGreaterThan(10)
  })

  test('no SQL in src/lib: neither drizzle nor a table is imported there', async () => {
    expect(await offenders('src/lib/**/*.ts', SQL_IMPORT)).toEqual([])
  })

  test('no SQL in plugins', async () => {
    expect(await offenders('src/plugins/**/*.ts', SQL_IMPORT)).toEqual([])
  })

  test('no SQL in controllers: route handlers hand the work to services', async () => {
    expect(await offenders('src/modules/*/index.ts', SQL_IMPORT)).toEqual([])
  })

  test('src/lib and src/db never import a module', async () => {
    expect([...(await offenders('src/lib/**/*.ts', /(^|\/)modules\//)), ...(await offenders('src/db/**/*.ts', /(^|\/)modules\//))]).toEqual([])
  })
})
