import { describe, expect, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, describeConfig, loadConfig, parseDuration, SETTINGS } from '../src/config'
import { GOOD_SECRET, PROD_ENV, problemsOf } from './support/config'

const prodBase = PROD_ENV


describe('config', () => {
  test('defaults load in development with no environment at all', () => {
    const c = loadConfig({})
    expect(c.env).toBe('development')
    expect(c.port).toBe(3000)
    expect(c.host).toBe('127.0.0.1')
    expect(c.bodyLimit).toBe(1024 * 1024)
    expect(c.jwt.accessTtlMs).toBe(600_000)
    expect(c.webauthn.rpId).toBe('localhost')
    expect(c.webauthn.origins).toEqual(['http://localhost:3000'])
    expect(c.dbPath).toBe('./data/bulwark.sqlite')
  })

  test('a safe production configuration is accepted', () => {
    const c = loadConfig(prodBase)
    expect(c.env).toBe('production')
    expect(c.secretSource).toBe('env')
  })

  test('durations and sizes parse with units', () => {
    expect(parseDuration('15m')).toBe(900_000)
    expect(parseDuration('7d')).toBe(7 * 86_400_000)
    expect(parseDuration('30')).toBe(30_000)
    expect(parseDuration('500ms')).toBe(500)
    expect(parseDuration('-1s')).toBeUndefined()
    expect(loadConfig({ BULWARK_BODY_LIMIT: '2MiB' }).bodyLimit).toBe(2 * 1024 * 1024)
  })

  test.each([
    [{ BULWARK_PORT: 'abc' }, 'BULWARK_PORT'],
    [{ BULWARK_PORT: '70000' }, 'BULWARK_PORT'],
    [{ BULWARK_ENV: 'staging' }, 'BULWARK_ENV'],
    [{ BULWARK_ALLOW_HTTP: 'maybe' }, 'BULWARK_ALLOW_HTTP'],
    [{ BULWARK_ACCESS_TOKEN_TTL: 'forever' }, 'BULWARK_ACCESS_TOKEN_TTL'],
    [{ BULWARK_PUBLIC_URL: 'not a url' }, 'BULWARK_PUBLIC_URL'],
    [{ BULWARK_CORS_ORIGINS: 'https://a.example.com/path' }, 'BULWARK_CORS_ORIGINS'],
    [{ BULWARK_REDIS_URL: 'http://x' }, 'BULWARK_REDIS_URL'],
    [{ BULWARK_PASSWORD_MIN_LENGTH: '100', BULWARK_PASSWORD_MAX_LENGTH: '64' }, 'BULWARK_PASSWORD_MIN_LENGTH'],
  ])('invalid value %p is refused in every environment', (env, name) => {
    const p = problemsOf(env as Record<string, string>)
    expect(p.length).toBeGreaterThan(0)
    expect(p.join('\n')).toContain(name)
  })

  test('secret values never appear in problem lines', () => {
    const p = problemsOf({ BULWARK_REDIS_URL: 'http://user:hunter2hunter2@x' })
    expect(p.join('\n')).not.toContain('hunter2')
  })

  test.each([
    [{ BULWARK_SECRET: undefined }, 'BULWARK_SECRET is required'],
    [{ BULWARK_SECRET: 'short-secret' }, 'too short'],
    [{ BULWARK_SECRET: 'a'.repeat(64) }, 'variety'],
    [{ BULWARK_CORS_ORIGINS: '*' }, 'wildcard'],
    [{ BULWARK_CORS_ORIGINS: 'http://app.example.com' }, 'plain http'],
    [{ BULWARK_PUBLIC_URL: 'http://auth.example.com' }, 'must be https'],
    [{ BULWARK_WEBAUTHN_ORIGINS: 'http://auth.example.com' }, 'BULWARK_WEBAUTHN_ORIGINS'],
    [{ BULWARK_CLAMD: undefined }, 'BULWARK_CLAMD is required'],
    [{ BULWARK_SMTP_URL: 'smtp://mail.example.com:25' }, 'requireTLS'],
    [{ BULWARK_DB_PATH: ':memory:' }, ':memory:'],
    [{ BULWARK_LOG_LEVEL: 'debug' }, 'debug'],
    [{ BULWARK_METRICS_TOKEN: undefined }, '/metrics would be public'],
  ])('production refuses %p', (override, needle) => {
    const env: Record<string, string> = { ...prodBase }
    for (const [k, v] of Object.entries(override)) {
      if (v === undefined) delete env[k]
      else env[k] = v
    }
    const p = problemsOf(env)
    expect(p.join('\n')).toContain(needle)
  })

  test('production serves /metrics without a token only on a management port or when BULWARK_METRICS_PUBLIC=1 says so', () => {
    const { BULWARK_METRICS_TOKEN: _, ...noToken } = prodBase
    expect(problemsOf(noToken).join('\n')).toContain('/metrics would be public')
    expect(problemsOf({ ...noToken, BULWARK_MANAGEMENT_PORT: '9100' })).toEqual([])
    expect(problemsOf({ ...noToken, BULWARK_METRICS_PUBLIC: '1' })).toEqual([])
    const c = loadConfig({ ...noToken, BULWARK_MANAGEMENT_PORT: '9100' })
    expect(c.management).toEqual({ port: 9100, host: '127.0.0.1' })
  })

  test('every production problem is reported at once, one line each', () => {
    const p = problemsOf({ BULWARK_ENV: 'production', BULWARK_CORS_ORIGINS: '*' })
    expect(p.length).toBeGreaterThanOrEqual(4)
    for (const line of p) expect(line).not.toContain('\n')
  })

  test('BULWARK_ALLOW_HTTP=1 lets production run behind plain HTTP', () => {
    const c = loadConfig({ ...prodBase, BULWARK_PUBLIC_URL: 'http://auth.internal', BULWARK_ALLOW_HTTP: '1' })
    expect(c.allowHttp).toBe(true)
  })

  test('uploads without a scanner need BULWARK_UPLOADS_SCAN=off said explicitly', () => {
    const env: Record<string, string> = { ...prodBase, BULWARK_UPLOADS_SCAN: 'off' }
    delete env.BULWARK_CLAMD
    expect(loadConfig(env).uploads.scan).toBe(false)
  })

  test('X_FILE reads the value from a file; both forms at once is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-cfg-'))
    const f = join(dir, 'secret')
    writeFileSync(f, `${GOOD_SECRET}\n`)
    const env: Record<string, string> = { ...prodBase, BULWARK_SECRET_FILE: f }
    delete env.BULWARK_SECRET
    const c = loadConfig(env)
    expect(c.secret).toBe(GOOD_SECRET)
    expect(c.secretSource).toBe('file')
    expect(problemsOf({ ...prodBase, BULWARK_SECRET_FILE: f }).join()).toContain('both set')
    expect(problemsOf({ BULWARK_PORT_FILE: join(dir, 'missing') }).join()).toContain('cannot read')
  })

  test('config check output masks secrets', () => {
    const lines = describeConfig({ ...prodBase, BULWARK_METRICS_TOKEN: 'metrics-token-value' })
    const all = lines.join('\n')
    expect(all).not.toContain(GOOD_SECRET)
    expect(all).not.toContain('metrics-token-value')
    expect(all).toContain('BULWARK_SECRET=******** (set)')
    expect(lines.length).toBe(SETTINGS.length)
  })
})
