/**
 * The SQLite connection settings the server depends on (src/db/client.ts), read back from a real file
 * database: WAL with NORMAL sync (durable across a process crash), foreign keys, the memory map and page
 * cache of the scale figures, and the checkpoint interval and WAL size limit of the write path's figures.
 */
import { afterAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase } from '../../src/db/client'

const dir = mkdtempSync(join(tmpdir(), 'bw-sqlite-settings-'))
const h = openDatabase(join(dir, 'bulwark.sqlite'))
afterAll(() => {
  h.close()
  rmSync(dir, { recursive: true, force: true })
})

const pragma = (name: string) => Object.values(h.sqlite.query(`PRAGMA ${name}`).get() as Record<string, unknown>)[0]

test.each([
  ['journal_mode', 'wal'],
  ['synchronous', 1], // NORMAL
  ['foreign_keys', 1],
  ['mmap_size', 268435456],
  ['cache_size', -16384],
  ['wal_autocheckpoint', 1000],
  ['journal_size_limit', 67108864],
] as const)('PRAGMA %s is %p', (name, value) => {
  expect(pragma(name)).toBe(value)
})
