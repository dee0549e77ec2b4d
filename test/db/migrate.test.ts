import { describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase } from '../../src/db/client'
import { migrate, MIGRATIONS, SchemaTooNewError } from '../../src/db/migrate'

describe('migrations', () => {
  test('a fresh database gets every migration and the built-in roles', async () => {
    const h = openDatabase(':memory:')
    expect(h.migration.applied.length).toBe(MIGRATIONS.length)
    const roles = h.sqlite.query<{ name: string; level: number }, []>('SELECT name, level FROM roles WHERE builtin = 1 ORDER BY level').all()
    expect(roles).toEqual([
      { name: 'user', level: 10 },
      { name: 'moderator', level: 50 },
      { name: 'admin', level: 90 },
      { name: 'owner', level: 100 },
    ])
    await h.close()
  })

  test('migrating twice is a no-op', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-mig-'))
    const path = join(dir, 'db.sqlite')
    openDatabase(path).close()
    const again = openDatabase(path)
    expect(again.migration.applied).toEqual([])
    expect(again.migration.current).toBe(MIGRATIONS.length)
    expect(again.sqlite.query<{ n: number }, []>('SELECT count(*) AS n FROM roles').get()!.n).toBe(5)
    await again.close()
  })

  test('a database migrated by a newer binary is refused', () => {
    const db = new Database(':memory:')
    migrate(db)
    db.run('INSERT INTO "__drizzle_migrations" (hash, created_at) VALUES (?, ?)', ['from-the-future', Date.UTC(2099, 0, 1)])
    expect(() => migrate(db)).toThrow(SchemaTooNewError)
    expect(() => migrate(db)).toThrow(/newer Bulwark/)
  })

  test('a failing migration leaves nothing half-applied', () => {
    const db = new Database(':memory:')
    const broken = [...MIGRATIONS, { tag: '9999_broken', when: Date.UTC(2098, 0, 1), hash: 'x', sql: ['CREATE TABLE t_ok (a int)', 'THIS IS NOT SQL'] }]
    expect(() => migrate(db, broken)).toThrow()
    expect(db.query("SELECT name FROM sqlite_master WHERE name IN ('t_ok','users')").all()).toEqual([])
  })

  test('pragmas: WAL, foreign keys, busy timeout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-prag-'))
    const h = openDatabase(join(dir, 'db.sqlite'))
    expect(h.sqlite.query<{ journal_mode: string }, []>('PRAGMA journal_mode').get()!.journal_mode).toBe('wal')
    expect(h.sqlite.query<{ foreign_keys: number }, []>('PRAGMA foreign_keys').get()!.foreign_keys).toBe(1)
    expect(h.sqlite.query<{ timeout: number }, []>('PRAGMA busy_timeout').get()!.timeout).toBe(5000)
    expect(h.sqlite.query<{ synchronous: number }, []>('PRAGMA synchronous').get()!.synchronous).toBe(1)
    await h.close()
  })
})
