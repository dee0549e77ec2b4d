/**
 * The SQLite connection settings the server depends on (src/db/client.ts), read back from a real file
 * database: WAL with NORMAL sync (durable across a process crash), foreign keys, no memory map by default
 * (BULWARK_DB_MMAP_MIB) and the page cache of the scale and soak figures, and the checkpoint interval and WAL size limit of the write path's figures.
 */
import { afterAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase } from '../../src/db/client'
import { makeApp } from '../helpers'

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
  ['mmap_size', 0],
  ['cache_size', -16384],
  ['wal_autocheckpoint', 1000],
  ['journal_size_limit', 67108864],
] as const)('PRAGMA %s is %p', (name, value) => {
  expect(pragma(name)).toBe(value)
})

test('BULWARK_DB_MMAP_MIB reaches the server\'s connection (and openDatabase takes the size in bytes)', async () => {
  const mapped = openDatabase(join(dir, 'mapped.sqlite'), { mmapBytes: 64 * 1024 * 1024 })
  expect(Object.values(mapped.sqlite.query('PRAGMA mmap_size').get() as Record<string, unknown>)[0]).toBe(67108864)
  mapped.close()
  const a = await makeApp({ BULWARK_DB_PATH: join(dir, 'app.sqlite'), BULWARK_DB_MMAP_MIB: '8' })
  try {
    expect(Object.values(a.deps.storage.sqlite!.query('PRAGMA mmap_size').get() as Record<string, unknown>)[0]).toBe(8 * 1024 * 1024)
  } finally {
    await a.close()
  }
})
