/**
 * The audit trail as shipped: events from real requests to dist/bulwark, `bulwark audit verify` and
 * `bulwark audit export` on the run folder's database, and a row changed behind the server's back. The whole
 * file runs on the embedded SQLite file and, with BULWARK_TEST_PG_URL, again on a fresh PostgreSQL database.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { createHash, createHmac } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SQL } from 'bun'
import { parsePgUrl } from '../../src/db/pg/client'
import { createTestDatabase, dropTestDatabase, PG_SKIP, PG_URL } from '../db/pg-helpers'
import { call, OWNER_EMAIL, OWNER_PASSWORD, runBinary, signIn, startBinary, type Running } from './harness'

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) from a base32 secret, written from the RFCs. */
function totp(secret: string, at = Date.now()): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0
  let value = 0
  const key: number[] = []
  for (const ch of secret.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | A.indexOf(ch)
    bits += 5
    if (bits >= 8) {
      key.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(Math.floor(at / 30_000)))
  const mac = createHmac('sha1', Buffer.from(key)).update(msg).digest()
  const off = mac[mac.length - 1]! & 0x0f
  const bin = ((mac[off]! & 0x7f) << 24) | (mac[off + 1]! << 16) | (mac[off + 2]! << 8) | mac[off + 3]!
  return String(bin % 1_000_000).padStart(6, '0')
}

/** RFC 8785 canonical JSON, independent of the sources. */
const canon = (v: unknown): string =>
  v === null || typeof v !== 'object'
    ? JSON.stringify(v)
    : Array.isArray(v)
      ? `[${v.map(canon).join(',')}]`
      : `{${Object.keys(v as object)
          .sort()
          .map((k) => `${JSON.stringify(k)}:${canon((v as Record<string, unknown>)[k])}`)
          .join(',')}}`

const ndjson = (text: string) => text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l))

/** The engine a run is on: the run folder's SQLite file, or a fresh PostgreSQL database. */
interface Engine {
  name: string
  /** The server's and the CLI's environment for this engine. */
  env: () => Record<string, string>
  setup(): Promise<void>
  teardown(): Promise<void>
  /** Changes the route recorded in an access_denied event behind the server's back; the event. */
  tamper(workdir: string): Promise<{ id: number; seq: number; chain_id: string }>
}

const sqliteEngine: Engine = {
  name: 'SQLite',
  env: () => ({}),
  setup: async () => {},
  teardown: async () => {},
  tamper: async (workdir) => {
    const db = new Database(join(workdir, 'data', 'bulwark.sqlite'))
    try {
      db.run('PRAGMA busy_timeout = 5000')
      const victim = db.query<{ id: number; seq: number; chain_id: string }, []>("SELECT id, seq, chain_id FROM security_events WHERE type = 'access_denied' ORDER BY id LIMIT 1").get()!
      db.run("UPDATE security_events SET details = json_set(details, '$.route', '/v1/other') WHERE id = ?", [victim.id])
      return victim
    } finally {
      db.close()
    }
  },
}

let pgUrl = ''
const pgEngine: Engine = {
  name: 'PostgreSQL',
  env: () => ({ BULWARK_DATABASE_URL: pgUrl }),
  setup: async () => {
    pgUrl = await createTestDatabase()
  },
  teardown: async () => {
    if (pgUrl) await dropTestDatabase(pgUrl)
  },
  tamper: async () => {
    const sql = new SQL({ adapter: 'postgres', ...parsePgUrl(pgUrl), max: 1 })
    try {
      const [v] = await sql`SELECT id, seq, chain_id FROM security_events WHERE type = 'access_denied' ORDER BY id LIMIT 1`
      await sql`UPDATE security_events SET details = jsonb_set(details, '{route}', '"/v1/other"') WHERE id = ${v.id}`
      return { id: Number(v.id), seq: Number(v.seq), chain_id: v.chain_id }
    } finally {
      await sql.close()
    }
  },
}

for (const engine of [sqliteEngine, pgEngine]) {
  const skip = engine === pgEngine && !PG_URL
  describe.skipIf(skip)(`bulwark audit (binary, ${engine.name})${engine === pgEngine ? PG_SKIP : ''}`, () => {
    let server: Running
    let ownerToken: string
    const cli = (args: string[]) => runBinary(args, { cwd: server.workdir, env: engine.env() })

    beforeAll(async () => {
      await engine.setup()
      // A fixed issuer: unset, the issuer follows the port, which port 0 changes across the restart below.
      server = await startBinary({ keep: true, env: { BULWARK_PUBLIC_URL: 'http://localhost:3000', ...engine.env() } })
      // The first owner is created just after the server starts listening: wait for its log line.
      for (let i = 0; i < 200 && !server.stdout().includes('created the first owner'); i++) await Bun.sleep(50)
      const owner = await signIn(server.base, OWNER_EMAIL, OWNER_PASSWORD)
      // The owner role requires a second factor: enrol TOTP in this session, which proves it here.
      const enrol = await call(server.base, 'POST', '/v1/me/mfa/totp', { token: owner.accessToken })
      expect(enrol.status).toBe(200)
      const confirm = await call(server.base, 'POST', '/v1/me/mfa/totp/confirm', { token: owner.accessToken, body: { code: totp(enrol.json.secret) } })
      expect(confirm.status).toBe(200)
      ownerToken = owner.accessToken

      const user = await signIn(server.base, 'audit-user@example.com', 'an audit user passphrase 7', true)
      expect((await call(server.base, 'GET', '/v1/audit', { token: user.accessToken })).status).toBe(403)
      expect((await call(server.base, 'GET', '/v1/audit/export', { token: user.accessToken })).status).toBe(403)
      expect((await call(server.base, 'GET', '/v1/me', { token: 'not.a.token' })).status).toBe(401)
      expect((await call(server.base, 'POST', '/v1/auth/login', { body: { email: 42 } })).status).toBe(422)
    }, 60_000)

    afterAll(async () => {
      await server?.stop()
      if (server) rmSync(server.workdir, { recursive: true, force: true })
      await engine.teardown()
    })

    test('audit --help and verify --help print help, exit 0 and touch nothing', async () => {
      const cwd = mkdtempSync(join(tmpdir(), 'bw-audit-help-'))
      try {
        for (const args of [['audit', '--help'], ['audit', 'verify', '--help'], ['audit', 'export', '-h']]) {
          const r = await runBinary(args, { cwd, env: engine.env() })
          expect(r.code).toBe(0)
          expect(r.stdout).toContain('Usage: bulwark audit')
        }
        expect(readdirSync(cwd)).toEqual([])
        const bad = await runBinary(['audit', 'frobnicate'], { cwd, env: engine.env() })
        expect(bad.code).toBe(64)
      } finally {
        rmSync(cwd, { recursive: true, force: true })
      }
    }, 15_000)

    test('the HTTP export streams the refusals of real requests as NDJSON with hash fields that re-verify', async () => {
      const r = await fetch(`${server.base}/v1/audit/export?type=access_denied`, { headers: { authorization: `Bearer ${ownerToken}` } })
      expect(r.status).toBe(200)
      expect(r.headers.get('content-type')).toStartWith('application/x-ndjson')
      const lines = ndjson(await r.text())
      expect(lines.map((l) => [l.type, l.details.route, l.details.permission])).toEqual([
        ['access_denied', '/v1/audit', 'audit:read'],
        ['access_denied', '/v1/audit/export', 'audit:read'],
      ])
      for (const l of lines) {
        const { id: _id, prevHash, hash, ...fields } = l
        expect(hash).toBe(createHash('sha256').update(prevHash + canon(fields)).digest('hex'))
      }
      const since = lines[0].createdAt
      const all = ndjson(await (await fetch(`${server.base}/v1/audit/export?since=${encodeURIComponent(since)}`, { headers: { authorization: `Bearer ${ownerToken}` } })).text())
      expect(all.every((l) => l.createdAt >= since)).toBe(true)
      const types = new Set(all.map((l) => l.type))
      for (const ty of ['access_denied', 'token_rejected', 'request_rejected']) expect(types.has(ty)).toBe(true)
    })

    test('the CLI export filters by type and carries chainId, seq, prevHash and hash', async () => {
      const r = await cli(['audit', 'export', '--type', 'token_rejected'])
      expect(r.code).toBe(0)
      const lines = ndjson(r.stdout)
      expect(lines.length).toBe(1)
      expect(lines[0]).toMatchObject({ type: 'token_rejected', outcome: 'failure', details: { route: '/v1/me', reason: 'invalid_token', status: 401 } })
      expect(lines[0].chainId).toMatch(/^[0-9a-f-]{36}$/)
      expect(lines[0].seq).toBeGreaterThan(0)
      expect(lines[0].prevHash).toMatch(/^[0-9a-f]{64}$/)
      expect(lines[0].hash).toMatch(/^[0-9a-f]{64}$/)
      expect(r.stdout).not.toContain('not.a.token')
    })

    test('a restart opens a new chain; both verify', async () => {
      const workdir = server.workdir
      expect(await server.stop()).toBe(0)
      server = await startBinary({ workdir, env: { BULWARK_PUBLIC_URL: 'http://localhost:3000', ...engine.env() } })
      expect((await call(server.base, 'GET', '/v1/me', { token: 'still.not.valid' })).status).toBe(401)
      const r = await cli(['audit', 'verify'])
      expect(r.code).toBe(0)
      expect(r.stdout).toContain('in 2 chains')
      expect(r.stdout.match(/^head /gm)?.length).toBe(2)
    }, 30_000)

    test('verify exits 0 on an intact trail, then 4 naming the changed event', async () => {
      const ok = await cli(['audit', 'verify'])
      expect(ok.code).toBe(0)
      expect(ok.stdout).toContain('audit trail intact')
      const route = await call(server.base, 'GET', '/v1/audit/verify', { token: ownerToken })
      expect(route.status).toBe(200)
      expect(route.json.intact).toBe(true)
      // The CLI prints the same head the route reports (the value to keep outside Bulwark).
      for (const c of route.json.chains) expect(ok.stdout).toContain(`head ${c.chainId}:${c.headPosition}:${c.headHash}`)
      const head = /head (\S+:\d+:[0-9a-f]{64})/.exec(ok.stdout)![1]!
      expect((await cli(['audit', 'verify', '--head', head])).code).toBe(0)
      const forged = await cli(['audit', 'verify', '--head', head.replace(/[0-9a-f]{64}$/, 'a'.repeat(64))])
      expect(forged.code).toBe(4)
      expect(forged.stdout).toContain('head_mismatch')
      expect((await cli(['audit', 'verify', '--head', 'nonsense'])).code).toBe(64)

      const victim = await engine.tamper(server.workdir)
      const bad = await cli(['audit', 'verify'])
      expect(bad.code).toBe(4)
      expect(bad.stdout).toContain(`chain ${victim.chain_id}, event ${victim.id}, position ${victim.seq}: hash_mismatch`)
      const json = await cli(['audit', 'verify', '--json'])
      expect(json.code).toBe(4)
      expect(JSON.parse(json.stdout).firstBroken).toMatchObject({ chainId: victim.chain_id, eventId: victim.id, position: victim.seq, reason: 'hash_mismatch' })
      const routeBad = await call(server.base, 'GET', '/v1/audit/verify', { token: ownerToken })
      expect(routeBad.json.intact).toBe(false)
      expect(routeBad.json.firstBroken.eventId).toBe(victim.id)
    }, 30_000)
  })
}

describe('bulwark audit (binary, no database)', () => {
  test('verify without a database says so and exits 1 without creating one', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'bw-audit-none-'))
    try {
      const r = await runBinary(['audit', 'verify'], { cwd })
      expect(r.code).toBe(1)
      expect(r.stderr).toContain('no database')
      expect(existsSync(join(cwd, 'data'))).toBe(false)
    } finally {
      rmSync(cwd, { recursive: true, force: true })
    }
  })
})
