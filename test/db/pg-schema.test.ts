import { describe, expect, test } from 'bun:test'
import { getTableConfig as pgConfig, PgTable } from 'drizzle-orm/pg-core'
import { getTableConfig as sqliteConfig, SQLiteTable } from 'drizzle-orm/sqlite-core'
import * as pg from '../../src/db/pg/schema'
import * as lite from '../../src/db/schema'

/** A dialect-free description of a table: what must be equal in both schemas. */
type Shape = {
  columns: Record<string, { notNull: boolean; primary: boolean; default: unknown; kind: string }>
  primaryKeys: string[][]
  indexes: Record<string, { unique: boolean; on: string[] }>
  foreignKeys: string[]
}

const colName = (c: unknown): string => ((c as { name?: string }).name ?? 'expr')

function kindOf(dataType: string, columnType: string, sqlType: string): string {
  if (columnType.includes('Boolean') || dataType === 'boolean') return 'boolean'
  if (columnType.includes('Json') || columnType === 'SQLiteTextJson' || sqlType === 'jsonb') return 'json'
  if (dataType === 'buffer' || columnType === 'SQLiteBlobBuffer' || sqlType === 'bytea') return 'bytes'
  if (sqlType.startsWith('text')) return 'string' // text COLLATE "C" (the binary-ordered user columns)
  return dataType === 'number' ? 'number' : dataType
}

function shape(config: ReturnType<typeof pgConfig> | ReturnType<typeof sqliteConfig>): Shape {
  const columns: Shape['columns'] = {}
  for (const c of config.columns) {
    const d = (c as { default?: unknown }).default
    columns[c.name] = { notNull: c.notNull, primary: c.primary, default: typeof d === 'object' && d !== null ? 'sql' : d, kind: kindOf(c.dataType, c.columnType, c.getSQLType()) }
  }
  const indexes: Shape['indexes'] = {}
  for (const i of config.indexes) indexes[i.config.name!] = { unique: !!i.config.unique, on: i.config.columns.map(colName) }
  return {
    columns,
    primaryKeys: config.primaryKeys.map((p) => p.columns.map((c) => c.name)),
    indexes,
    foreignKeys: config.foreignKeys
      .map((f) => {
        const r = f.reference()
        return `${r.columns.map((c) => c.name).join(',')}->${(r.foreignTable as unknown as { [k: symbol]: string })[Symbol.for('drizzle:Name')]}(${r.foreignColumns.map((c) => c.name).join(',')}) on delete ${f.onDelete ?? 'no action'}`
      })
      .sort(),
  }
}

const liteTables = (Object.values(lite) as unknown[]).filter((t): t is SQLiteTable => t instanceof SQLiteTable)
const pgTables = (Object.values(pg) as unknown[]).filter((t): t is PgTable => t instanceof PgTable)
const byName = <T,>(list: T[], name: (t: T) => string) => Object.fromEntries(list.map((t) => [name(t), t]))

describe('the PostgreSQL schema mirrors the SQLite schema', () => {
  test('the same tables', () => {
    expect(pgTables.map((t) => pgConfig(t).name).sort()).toEqual(liteTables.map((t) => sqliteConfig(t).name).sort())
    expect(liteTables.length).toBeGreaterThan(15)
  })

  const pgByName = byName(pgTables, (t) => pgConfig(t).name)
  for (const t of liteTables) {
    const name = sqliteConfig(t).name
    test(`${name}: columns, nullability, defaults, keys, uniques, indexes and foreign keys`, () => {
      const p = pgByName[name]
      expect(p).toBeDefined()
      expect(shape(pgConfig(p!))).toEqual(shape(sqliteConfig(t)))
    })
  }
})
