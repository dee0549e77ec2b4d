import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { SETTINGS } from '../src/config'

test('the README documents every setting', async () => {
  const readme = await Bun.file(join(import.meta.dir, '..', 'README.md')).text()
  const missing = SETTINGS.map((s) => s.env).filter((name) => !readme.includes(`\`${name}\``))
  expect(missing).toEqual([])
})
