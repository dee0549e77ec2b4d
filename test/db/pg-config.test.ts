import { describe, expect, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, describeConfig, loadConfig } from '../../src/config'
import { PROD_ENV as prod, problemsOf } from '../support/config'



describe('PostgreSQL settings', () => {
  test('without BULWARK_DATABASE_URL the embedded SQLite is used', () => {
    expect(loadConfig({}).pg).toBeUndefined()
  })

  test('postgres:// and postgresql:// select PostgreSQL with pool, timeout and TLS applied', () => {
    const c = loadConfig({ BULWARK_DATABASE_URL: 'postgresql://bw:pw@db.internal:5433/auth', BULWARK_DB_POOL_SIZE: '25', BULWARK_DB_STATEMENT_TIMEOUT: '5s', BULWARK_DB_TLS: 'require' })
    expect(c.pg).toEqual({ url: 'postgresql://bw:pw@db.internal:5433/auth', poolSize: 25, statementTimeoutMs: 5000, tls: 'require', caFile: undefined, allowPlaintext: false })
    expect(loadConfig({ BULWARK_DATABASE_URL: 'postgres://127.0.0.1/x' }).pg).toMatchObject({ poolSize: 10, statementTimeoutMs: 30_000, tls: 'disable' })
  })

  test('bad values: one line per problem, and the URL (with its password) is never echoed', () => {
    const p = problemsOf({ BULWARK_DATABASE_URL: 'mysql://u:hunter2@db/x', BULWARK_DB_POOL_SIZE: '0', BULWARK_DB_TLS: 'maybe' })
    expect(p).toHaveLength(3)
    expect(p.some((l) => l.startsWith('BULWARK_DATABASE_URL must be a postgres://'))).toBe(true)
    expect(p.some((l) => l.startsWith('BULWARK_DB_POOL_SIZE must be'))).toBe(true)
    expect(p.some((l) => l.startsWith('BULWARK_DB_TLS must be one of disable, require, verify-full'))).toBe(true)
    const q = problemsOf({ BULWARK_DATABASE_URL: 'Not A Url hunter2' })
    expect(q).toHaveLength(1)
    expect(p.join(' ') + q.join(' ')).not.toContain('hunter2')
  })

  test('a CA file needs verify-full and must be readable', () => {
    expect(problemsOf({ BULWARK_DATABASE_URL: 'postgres://h/x', BULWARK_DB_TLS: 'require', BULWARK_DB_TLS_CA_FILE: '/nonexistent/ca.pem' })).toEqual([
      'BULWARK_DB_TLS_CA_FILE is only read with BULWARK_DB_TLS=verify-full (got require)',
      'BULWARK_DB_TLS_CA_FILE: cannot read /nonexistent/ca.pem',
    ])
    const ca = join(mkdtempSync(join(tmpdir(), 'bw-ca-')), 'ca.pem')
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n')
    expect(loadConfig({ BULWARK_DATABASE_URL: 'postgres://h/x', BULWARK_DB_TLS: 'verify-full', BULWARK_DB_TLS_CA_FILE: ca }).pg?.caFile).toBe(ca)
  })

  test('production refuses plaintext to a non-loopback host unless BULWARK_DB_ALLOW_PLAINTEXT=1', () => {
    const remote = problemsOf({ ...prod, BULWARK_DATABASE_URL: 'postgres://bw:pw@db.internal/auth' })
    expect(remote.filter((l) => l.includes('host db.internal is not loopback and BULWARK_DB_TLS=disable'))).toHaveLength(1)
    for (const env of <Record<string, string>[]>[
      { BULWARK_DATABASE_URL: 'postgres://bw:pw@db.internal/auth', BULWARK_DB_ALLOW_PLAINTEXT: '1' },
      { BULWARK_DATABASE_URL: 'postgres://bw:pw@db.internal/auth', BULWARK_DB_TLS: 'verify-full' },
      { BULWARK_DATABASE_URL: 'postgres://bw:pw@127.0.0.1/auth' },
      { BULWARK_DATABASE_URL: 'postgres://bw:pw@[::1]/auth' },
    ]) {
      expect(problemsOf({ ...prod, ...env }).filter((l) => l.includes('not loopback'))).toEqual([])
    }
  })

  test('production serves on a PostgreSQL URL (loopback, plaintext allowed there)', () => {
    expect(problemsOf({ ...prod, BULWARK_DATABASE_URL: 'postgres://127.0.0.1/auth' })).toEqual([])
    expect(problemsOf(prod)).toEqual([])
  })

  test('config check shows the URL with its password masked', () => {
    const lines = describeConfig({ BULWARK_DATABASE_URL: 'postgres://bw:s3cr%40t@db.internal:5432/auth' })
    expect(lines).toContain('BULWARK_DATABASE_URL=postgres://bw:********@db.internal:5432/auth')
    expect(lines.join('\n')).not.toContain('s3cr')
    expect(describeConfig({})).toContain('BULWARK_DATABASE_URL=(unset)')
  })
})
