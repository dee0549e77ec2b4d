/**
 * Every SQL statement goes through drizzle's query builder or its `sql` tag, both of which bind values as
 * parameters. This test fails on the ways around that: `sql.raw(`, a SQL-looking template literal with
 * `${…}` that is not drizzle's `sql` tag, and a raw bun:sqlite call (`sqlite.run/query/prepare/exec`)
 * whose statement is not a plain string literal. Reviewed exceptions are allowlisted line by line.
 */
import { describe, expect, test } from 'bun:test'
import { Glob } from 'bun'
import { join } from 'node:path'

interface Finding {
  file: string
  line: number
  rule: string
  text: string
}

const ALLOWLIST: { file: string; contains: string; why: string }[] = [
  {
    file: 'src/modules/audit/service.ts',
    contains: "const lockAndHead = `SELECT pg_advisory_xact_lock(hashtext('audit-chain:${chainId}')); SELECT seq, hash, created_at FROM security_events WHERE chain_id = '${chainId}' ORDER BY seq DESC LIMIT 1`",
    why: 'the chain lock and head as one simple query (that protocol takes no parameters): chainId is this process\'s own UUIDv7, checked with isId just before; anything else takes the parameterised statements',
  },


  {
    file: 'src/db/migrate.ts',
    contains: 'sqlite.run(stmt)',
    why: 'runs the migration files drizzle-kit generated, inlined at build time by a macro; no request data reaches them',
  },
  {
    file: 'src/db/client.ts',
    contains: 'sqlite.run(`PRAGMA busy_timeout = ${n}`)',
    why: 'PRAGMA takes no bound parameters; `n` is an integer clamped from the validated configuration',
  },
  {
    file: 'src/db/tx.ts',
    contains: "if (limit === 1) return sql.raw(' limit 1')",
    why: 'SQLite literal LIMIT of point lookups: a constant string',
  },
  {
    file: 'src/db/tx.ts',
    contains: 'return sql.raw(String(n)) as unknown as number',
    why: 'literalLimit: `n` is checked to be a safe non-negative integer on the line before, which cannot carry SQL',
  },
  {
    file: 'src/db/client.ts',
    contains: 'sqlite.run(`PRAGMA mmap_size = ${mmapBytes}`)',
    why: 'PRAGMA takes no bound parameters; `mmapBytes` is a non-negative integer (Math.max, Math.floor) from the validated configuration',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: 'db.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${q(table)}`)',
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: 'db.query<Record<string, unknown>, [number, number]>(`SELECT ${t.columns.map((c) => q(c.name))',
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: 'sql.unsafe(`SELECT count(*) AS n FROM ${q(table)}`)',
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: "sql.unsafe(`SELECT ${t.columns.map((c) => q(c.name)).join(', ')} FROM ${q(t.name)} ORDER BY",
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: 'h.sqlite.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${q(t.name)}`)',
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: 'db.run(`DELETE FROM ${q(table)}`)',
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: "db.prepare(`INSERT INTO ${q(t.name)} (${cols.map((c) => q(c.name)).join(', ')}) VALUES ${values}`)",
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: 'conn.unsafe(`DELETE FROM ${q(table)}`)',
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: "conn.unsafe(`INSERT INTO ${q(t.name)} (${cols.map((c) => q(c.name)).join(', ')}) OVERRIDING SYSTEM VALUE VALUES ${values}`, params)",
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
  {
    file: 'src/db/pg/copy.ts',
    contains: "conn.unsafe(`SELECT setval(pg_get_serial_sequence('${q(t.name)}', '${col}')",
    why: 'bulwark db copy: identifiers come only from the drizzle schema (tableSpecs) and are quoted by q(); every value is a bound parameter',
  },
]

const SQL_WORDS = /\bselect\b[\s\S]*\bfrom\b|\binsert\s+into\b|\bupdate\s+\S+\s+set\b|\bdelete\s+from\b|\bpragma\s+[\w$]|\b(?:create|drop)\s+(?:table|index|view|trigger)\b|\balter\s+table\b/i

/** Findings in one source text. */
export function scanSource(file: string, source: string): Finding[] {
  const out: Finding[] = []
  const lineOf = (index: number) => source.slice(0, index).split('\n').length
  const lineText = (index: number) => source.split('\n')[lineOf(index) - 1]!.trim()
  const add = (index: number, rule: string) => out.push({ file, line: lineOf(index), rule, text: lineText(index) })

  for (const m of source.matchAll(/\bsql\s*\.\s*raw\s*\(/g)) add(m.index!, 'sql.raw')
  // Template literals (no nesting needed for this codebase's style); the tag is the identifier before the backtick.
  for (const m of source.matchAll(/([\w$.]*)\s*`((?:\\.|[^`\\])*)`/g)) {
    const [, tag, body] = m
    if (!body!.includes('${') || tag === 'sql' || tag!.endsWith('.sql')) continue
    if (SQL_WORDS.test(body!)) add(m.index!, 'interpolated SQL template')
  }
  // A SQL string literal glued to something with `+`, before or after it.
  for (const m of source.matchAll(/(\+\s*)?(['"])((?:\\.|(?!\2)[^\\\n])*)\2(\s*\+)?/g)) {
    if ((m[1] || m[4]) && SQL_WORDS.test(m[3]!)) add(m.index!, 'concatenated SQL string')
  }
  for (const m of source.matchAll(/\bsqlite\s*\.\s*(?:run|query|prepare|exec)\s*(?:<[^>()]*>)?\s*\((?!\s*['"])/g)) add(m.index!, 'raw sqlite call with a non-literal statement')
  return out
}

const allowed = (f: Finding) => ALLOWLIST.some((a) => a.file === f.file && f.text.includes(a.contains))

describe('SQL safety', () => {
  const root = join(import.meta.dir, '..')
  const files = [...new Glob('src/**/*.ts').scanSync({ cwd: root })].sort()

  test('src/ has no raw or interpolated SQL outside the allowlist', async () => {
    expect(files.length).toBeGreaterThan(10)
    const findings: Finding[] = []
    for (const file of files) findings.push(...scanSource(file, await Bun.file(join(root, file)).text()))
    expect(findings.filter((f) => !allowed(f))).toEqual([])
    // Every allowlist entry still matches something: a stale entry would hide a future line.
    for (const a of ALLOWLIST) expect(findings.some((f) => f.file === a.file && f.text.includes(a.contains)), a.file).toBe(true)
  })

  test('the scanner flags each unsafe form', () => {
    const bad = [
      "db.run(sql.raw(`DELETE FROM users WHERE id = '${id}'`))",
      'const q = `SELECT * FROM users WHERE email = \'${email}\'`',
      'sqlite.run(`UPDATE users SET name = ${name}`)',
      "sqlite.query('SELECT * FROM users WHERE id = ' + id)",
      "const q = 'DELETE FROM sessions WHERE user_id = ' + userId",
      "const q = prefix + 'SELECT id FROM users'",
      'sqlite.prepare<{ n: number }, []>(statement)',
      'sqlite.exec(`PRAGMA ${pragma}`)',
      'sqlite.query(\n  statement,\n)',
    ]
    for (const src of bad) expect(scanSource('x.ts', src).length, src).toBeGreaterThan(0)
  })

  test('the scanner leaves drizzle and literal statements alone', () => {
    const good = [
      "index('users_name_lower').on(sql`lower(${t.name})`)",
      'db.select().from(users).where(sql`${users.email} = ${email}`)',
      "sqlite.run('PRAGMA foreign_keys = ON')",
      "sqlite.query<{ n: number }, []>('SELECT count(*) AS n FROM roles').get()",
      'const msg = `user ${id} was updated`',
      'logger.info(`select ${n} items`)',
      "const a = 'from ' + where",
      "sqlite\n  .query<{ n: number }, [number]>(\n    \"SELECT count(*) AS n FROM users WHERE created_at >= ?\",\n  )",
    ]
    for (const src of good) expect(scanSource('x.ts', src), src).toEqual([])
  })
})
