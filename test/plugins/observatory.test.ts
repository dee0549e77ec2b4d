/**
 * The MDN HTTP Observatory rules against a real socket (see scripts/observatory.ts for how it is run and
 * why it is not a project dependency). Needs the package in OBSERVATORY_DIR (default /tmp/obs).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { HTTPS_ONLY, OBSERVATORY_DIR, observatoryInstalled, scorePage } from '../../scripts/observatory'
import { testConfig } from '../../src/config'
import { startServer, type Running } from '../../src/server'
import { makeApp } from '../helpers'
import { testDatabaseEnv } from '../support/pg-apps'

const installed = observatoryInstalled()
const label = installed ? '' : ` (skipped: @mdn/mdn-http-observatory is not installed in ${OBSERVATORY_DIR}; see scripts/observatory.ts)`

describe.skipIf(!installed)(`MDN HTTP Observatory${label}`, () => {
  let running: Running
  let db: Awaited<ReturnType<typeof testDatabaseEnv>>
  beforeAll(async () => {
    db = await testDatabaseEnv({ BULWARK_PORT: '0' })
    running = await startServer(testConfig(db.env))
  })
  afterAll(async () => {
    await running.stop()
    await db.drop()
  })

  for (const path of ['/', '/docs']) {
    test(`every rule passes on ${path} except the HTTPS-only ones`, async () => {
      const s = await scorePage('127.0.0.1', running.server.port!, path)
      expect(s.rules.length).toBe(10)
      const failing = s.rules.filter((r) => !r.pass).map((r) => r.name)
      expect(failing.sort()).toEqual([...HTTPS_ONLY].sort())
      // 100 − 20 (no HSTS over http) − 20 (no http→https redirect): the plain-HTTP ceiling.
      expect(s.score).toBe(60)
    }, 30_000)
  }

  test('over https the HSTS rule passes on the headers Bulwark sends (captured response, the package’s own rule)', async () => {
    const pkg = join(OBSERVATORY_DIR, 'node_modules', '@mdn', 'mdn-http-observatory', 'src')
    const { strictTransportSecurityTest } = await import(join(pkg, 'analyzer', 'tests', 'strict-transport-security.js'))
    const a = await makeApp({ BULWARK_PUBLIC_URL: 'https://auth.example.com' })
    try {
      const res = await a.handle(new Request('https://auth.example.com/health/live'))
      const captured = { status: res.status, headers: Object.fromEntries(res.headers), verified: true }
      const out = strictTransportSecurityTest({ hostname: 'auth.example.com', responses: { https: captured, auto: captured } })
      expect(out.result).toBe('hsts-implemented-max-age-at-least-six-months')
      expect(out.pass).toBe(true)
    } finally {
      await a.close()
    }
  })
})
