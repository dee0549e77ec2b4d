/** Configuration added with the CLI work: unknown variables, profiles, the public URL that follows the listener, mail links. */
import { describe, expect, test } from 'bun:test'
import { ConfigError, configWarnings, describeConfig, followListener, listenerUrl, loadConfig, unknownVariables } from '../src/config'
import { closestName } from '../src/lib/closest-name'
import { DEVELOPMENT_ROUTE_LIMITS } from '../src/lib/rate-limit-policies'
import { PROD_ENV as PROD, problemsOf } from './support/config'



describe('misspelled BULWARK_* variables', () => {
  test('development and test warn with the closest known name, _FILE forms included', () => {
    for (const env of ['development', 'test']) {
      const c = loadConfig({ BULWARK_ENV: env, BULWARK_PROT: '1', BULWARK_SECRET_FIEL: '/x' })
      const w = configWarnings(c)
      expect(w).toContain('BULWARK_PROT is not a Bulwark setting; did you mean BULWARK_PORT?')
      expect(w).toContain('BULWARK_SECRET_FIEL is not a Bulwark setting; did you mean BULWARK_SECRET_FILE?')
    }
  })

  test('production refuses, one line per unknown variable, with everything else', () => {
    const p = problemsOf({ ...PROD, BULWARK_LOG_LEVLE: 'debug', BULWARK_METRICS_TOKNE: 't', BULWARK_CORS_ORIGINS: 'not an origin' })
    expect(p).toContain('BULWARK_LOG_LEVLE is not a Bulwark setting; did you mean BULWARK_LOG_LEVEL?')
    expect(p).toContain('BULWARK_METRICS_TOKNE is not a Bulwark setting; did you mean BULWARK_METRICS_TOKEN?')
    expect(p.some((l) => l.includes('BULWARK_CORS_ORIGINS'))).toBe(true)
    for (const line of p) expect(line).not.toContain('\n')
    expect(problemsOf(PROD)).toEqual([])
  })

  test('a name far from every setting gets no guess; test-suite variables and other prefixes are left alone', () => {
    expect(unknownVariables({ BULWARK_WIDGETS: '1' })).toEqual(['BULWARK_WIDGETS is not a Bulwark setting (see `bulwark config check` for the list)'])
    expect(unknownVariables({ BULWARK_REDIS_URL_FILE: '/run/secrets/redis', BULWARK_TEST_REDIS_URL: 'redis://x', PATH: '/bin', BULWARKISH: '1', BULWARK_PORT: '1' })).toEqual([])
    expect(unknownVariables({ bulwark_port: '1' })).toEqual(['bulwark_port is not a Bulwark setting; did you mean BULWARK_PORT?'])
    expect(closestName('BULWARK_PROT', ['BULWARK_PORT', 'BULWARK_HOST'])).toBe('BULWARK_PORT')
  })
})

describe('profiles', () => {
  test('development: generous route limits and one-minute penalties; test and production keep the strict defaults', () => {
    const dev = loadConfig({})
    expect(dev.rateLimit.penaltyMaxMs).toBe(60_000)
    expect(dev.rateLimit.penaltyDecayMs).toBe(60_000)
    expect(dev.rateLimit.routes['register-ip']).toEqual(DEVELOPMENT_ROUTE_LIMITS['register-ip']!)
    expect(dev.lockout.maxMs).toBe(5 * 60_000)
    for (const c of [loadConfig({ BULWARK_ENV: 'test' }), loadConfig(PROD)]) {
      expect(c.rateLimit.penaltyMaxMs).toBe(24 * 3_600_000)
      expect(c.rateLimit.routes).toEqual({})
      expect(c.lockout.maxMs).toBe(24 * 3_600_000)
    }
  })

  test('test hashes passwords fast; development and production use the OWASP argon2id parameters', () => {
    expect(loadConfig({ BULWARK_ENV: 'test' }).password).toMatchObject({ argon2MemoryKib: 1024, argon2Time: 1 })
    expect(loadConfig({}).password).toMatchObject({ argon2MemoryKib: 19456, argon2Time: 2 })
    expect(loadConfig(PROD).password).toMatchObject({ argon2MemoryKib: 19456, argon2Time: 2 })
  })

  test('an explicit setting beats the profile default; config check shows the profile default', () => {
    const c = loadConfig({ BULWARK_RATE_LIMIT_PENALTY_MAX: '2h', BULWARK_RATE_LIMIT_ROUTES: 'register-ip=7/1h' })
    expect(c.rateLimit.penaltyMaxMs).toBe(2 * 3_600_000)
    expect(c.rateLimit.routes['register-ip']).toEqual({ limit: 7, windowMs: 3_600_000 })
    expect(c.rateLimit.routes['login-ip']).toEqual(DEVELOPMENT_ROUTE_LIMITS['login-ip']!)
    expect(describeConfig({})).toContain('BULWARK_RATE_LIMIT_PENALTY_MAX=1m')
    expect(describeConfig({ BULWARK_ENV: 'production' })).toContain('BULWARK_RATE_LIMIT_PENALTY_MAX=24h')
  })
})

describe('public URL', () => {
  test('unset, it is the listening address (localhost for loopback and wildcard binds) and follows the bound port', () => {
    const c = loadConfig({ BULWARK_PORT: '0' })
    expect(c.follows.publicUrl).toBe(true)
    followListener(c, 41234)
    expect(c.publicUrl).toBe('http://localhost:41234')
    expect(c.webauthn).toEqual({ rpId: 'localhost', origins: ['http://localhost:41234'] })
    expect(loadConfig({ BULWARK_PORT: '8080' }).publicUrl).toBe('http://localhost:8080')
    expect(listenerUrl('0.0.0.0', 80)).toBe('http://localhost:80')
    expect(listenerUrl('192.0.2.7', 3000)).toBe('http://192.0.2.7:3000')
    expect(listenerUrl('2001:db8::1', 3000)).toBe('http://[2001:db8::1]:3000')
  })

  test('set, it (and explicit WebAuthn settings) stay put', () => {
    const c = loadConfig({ BULWARK_PUBLIC_URL: 'https://auth.example.com', BULWARK_PORT: '0' })
    followListener(c, 41234)
    expect(c.publicUrl).toBe('https://auth.example.com')
    const d = loadConfig({ BULWARK_WEBAUTHN_RP_ID: 'example.com', BULWARK_PORT: '0' })
    followListener(d, 5000)
    expect(d.webauthn).toEqual({ rpId: 'example.com', origins: ['http://localhost:5000'] })
  })

  test('production without it is refused unless plain HTTP is accepted, which then warns', () => {
    const env: Record<string, string> = { ...PROD }
    delete env.BULWARK_PUBLIC_URL
    expect(problemsOf(env).join('\n')).toContain('BULWARK_PUBLIC_URL is required in production')
    const c = loadConfig({ ...env, BULWARK_ALLOW_HTTP: '1' })
    expect(configWarnings(c).join('\n')).toContain('BULWARK_PUBLIC_URL is not set')
  })
})

describe('mail links', () => {
  test('BULWARK_APP_URL gives the default paths; a template overrides one of them', () => {
    const c = loadConfig({ BULWARK_APP_URL: 'https://app.example.com/', BULWARK_MAIL_LINK_RESET: 'https://app.example.com/account/reset?t={token}' })
    expect(c.mailLinks).toEqual({
      verify: 'https://app.example.com/verify-email#token={token}',
      reset: 'https://app.example.com/account/reset?t={token}',
      unlock: 'https://app.example.com/unlock#token={token}',
    })
    expect(loadConfig({}).mailLinks).toEqual({})
  })

  test('a template without {token} or not an absolute http(s) URL is refused', () => {
    expect(problemsOf({ BULWARK_MAIL_LINK_VERIFY: 'https://app.example.com/verify' }).join()).toContain('must contain {token}')
    expect(problemsOf({ BULWARK_MAIL_LINK_UNLOCK: '/unlock?token={token}' }).join()).toContain('absolute')
    expect(problemsOf({ BULWARK_APP_URL: 'https://app.example.com/?x=1' }).join()).toContain('BULWARK_APP_URL')
    expect(problemsOf({ ...PROD, BULWARK_APP_URL: 'http://app.example.com' }).join()).toContain('not https')
  })
})
