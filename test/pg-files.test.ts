/** test/pg-files.txt names every in-process test file: run on PostgreSQL too, or left out with a reason. */
import { expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

test('every in-process test file is listed in test/pg-files.txt, or left out there with its reason', () => {
  const root = join(import.meta.dir, '..')
  const text = readFileSync(join(root, 'test', 'pg-files.txt'), 'utf8')
  const listed = new Set(text.split('\n').filter((l) => l && !l.startsWith('#')))
  const leftOut = new Set([...text.matchAll(/^#\s+(test\/\S+\.test\.ts)\s+\S/gm)].map((m) => m[1]!))
  const files = [...new Bun.Glob('test/**/*.test.ts').scanSync(root)].filter((f) => !f.startsWith('test/binary/')).sort()
  const missing = files.filter((f) => !listed.has(f) && !leftOut.has(f))
  expect(missing).toEqual([])
  const gone = [...listed, ...leftOut].filter((f) => !files.includes(f))
  expect(gone).toEqual([])
})
