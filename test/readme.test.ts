import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { SETTINGS } from '../src/config'

test('the README documents every setting', async () => {
  const readme = await Bun.file(join(import.meta.dir, '..', 'README.md')).text()
  const missing = SETTINGS.map((s) => s.env).filter((name) => !readme.includes(`\`${name}\``))
  expect(missing).toEqual([])
})

test('the README stands alone: every link stays inside the repository and exists', async () => {
  const root = join(import.meta.dir, '..')
  const readme = await Bun.file(join(root, 'README.md')).text()
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!)
  const outside = links.filter((l) => /^[a-z][a-z0-9+.-]*:/i.test(l) || l.startsWith('//') || l.startsWith('..') || l.startsWith('/'))
  expect(outside).toEqual([])
  const missing = []
  for (const l of links.filter((l) => !l.startsWith('#'))) if (!(await Bun.file(join(root, l.split('#')[0]!)).exists())) missing.push(l)
  expect(missing).toEqual([])
  // Plain-text references to the workspace outside the repository are outside links too.
  expect(readme.match(/\.\.\/shared\b/g) ?? []).toEqual([])
  expect(await Bun.file(join(root, 'LICENSE')).exists()).toBe(true)
})
