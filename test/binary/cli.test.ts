/**
 * The command line of the shipped binary: every command answers --help/-h without doing anything,
 * unknown flags are usage errors, misspelled BULWARK_* variables are reported, the first start says
 * where it listens, and an unset BULWARK_PUBLIC_URL follows the port actually bound.
 */
import { Database } from 'bun:sqlite'
import { describe, expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { call, OWNER_EMAIL, OWNER_PASSWORD, runBinary, signIn, startBinary } from './harness'

/** Every file under a folder with a hash of its contents: equal snapshots mean nothing was written. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walk(p)
      else out[p.slice(dir.length)] = createHash('sha256').update(readFileSync(p)).digest('hex')
    }
  }
  walk(dir)
  return out
}

const signingKeyCount = (dir: string) => {
  const db = new Database(join(dir, 'data', 'bulwark.sqlite'), { readonly: true })
  try {
    return db.query<{ n: number }, []>('SELECT count(*) AS n FROM signing_keys').get()!.n
  } finally {
    db.close()
  }
}

/** The command names `bulwark --help` lists, so a command added later is covered without editing this file. */
async function listedCommands(): Promise<string[][]> {
  const r = await runBinary(['--help'])
  expect(r.code).toBe(0)
  const section = r.stdout.split('Commands:\n')[1]!.split('\n\n')[0]!
  return section.split('\n').map((line) => line.trim().split(/\s{2,}/)[0]!.replace(' (default)', '').split(' '))
}

const GOOD_SECRET = 'k3J9x!Qm2Lr8Vt5Pz1Wc7Yb4Nd6Hf0Gs-aE_uR'
const PROD = { BULWARK_ENV: 'production', BULWARK_SECRET: GOOD_SECRET, BULWARK_PUBLIC_URL: 'https://auth.example.com', BULWARK_CLAMD: '127.0.0.1:3310', BULWARK_METRICS_TOKEN: 'a-metrics-token-of-some-length-0123456789' }

describe('bulwark <command> --help', () => {
  test('the main help lists every command of the package', async () => {
    const names = (await listedCommands()).map((w) => w.join(' '))
    for (const n of ['serve', 'migrate', 'config check', 'admin create', 'keys rotate']) expect(names).toContain(n)
  })

  test('--help and -h after every command print its usage, exit 0 and leave an empty folder empty', async () => {
    const runs = (await listedCommands()).flatMap((words) => ['--help', '-h'].map((flag) => [words, flag] as const))
    await Promise.all(
      runs.map(async ([words, flag]) => {
        const cwd = mkdtempSync(join(tmpdir(), 'bw-help-'))
        // stdin carries a password, so `admin create` would have everything it needs if it ran.
        const r = await runBinary([...words, flag], { cwd, stdin: 'a long passphrase for help 1\n', env: { BULWARK_PORT: '0', BULWARK_ADMIN_EMAIL: OWNER_EMAIL, BULWARK_ADMIN_PASSWORD: OWNER_PASSWORD } })
        expect({ words, flag, code: r.code, stderr: r.stderr }).toEqual({ words, flag, code: 0, stderr: '' })
        expect(r.stdout).toStartWith(`Usage: bulwark ${words.join(' ')}`)
        expect(r.stdout).toContain('-h, --help')
        expect(readdirSync(cwd)).toEqual([])
      }),
    )
  }, 60_000)

  test('--help on an existing database changes nothing: no key rotated, no owner created, no migration', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'bw-help-db-'))
    expect((await runBinary(['migrate'], { cwd })).code).toBe(0)
    // Counting opens the database (creating its -wal/-shm files), so it comes before the snapshot.
    const keys = signingKeyCount(cwd)
    const before = snapshot(cwd)
    // Run one after the other: each must find the folder as the previous one left it.
    for (const words of await listedCommands()) {
      for (const args of [[...words, '-h'], ['help', ...words], [...words, '--email', 'x@example.com', '--help']]) {
        const r = await runBinary(args, { cwd, stdin: 'a long passphrase for help 1\n', env: { BULWARK_PORT: '0' } })
        expect({ args, code: r.code }).toEqual({ args, code: 0 })
        expect(r.stdout).toStartWith(`Usage: bulwark ${words.join(' ')}`)
      }
    }
    expect(snapshot(cwd)).toEqual(before)
    expect(signingKeyCount(cwd)).toBe(keys)
    // The same folder does change when the command really runs: the check above can see a rotation.
    expect((await runBinary(['keys', 'rotate'], { cwd })).code).toBe(0)
    expect(signingKeyCount(cwd)).toBeGreaterThan(keys)
  }, 60_000)

  test('help does not even read the configuration: it answers under a configuration that would be refused', async () => {
    const r = await runBinary(['serve', '--help'], { env: { BULWARK_ENV: 'production', BULWARK_PORT: 'not a port' } })
    expect(r.code).toBe(0)
    expect(r.stdout).toStartWith('Usage: bulwark serve')
  }, 30_000)

  test('an unknown flag exits 64 with one line on stderr and does nothing', async () => {
    const runs = (await listedCommands()).flatMap((words) => ['--no-such-flag', '-x'].map((bad) => [words, bad] as const))
    await Promise.all(
      runs.map(async ([words, bad]) => {
        const cwd = mkdtempSync(join(tmpdir(), 'bw-badflag-'))
        const r = await runBinary([...words, bad], { cwd, env: { BULWARK_PORT: '0' } })
        expect({ words, bad, code: r.code }).toEqual({ words, bad, code: 64 })
        const lines = r.stderr.trimEnd().split('\n')
        expect(lines).toHaveLength(1)
        expect(lines[0]).toContain(bad.split('=')[0]!)
        expect(r.stdout).toBe('')
        expect(readdirSync(cwd)).toEqual([])
      }),
    )
  }, 60_000)

  test('usage errors: unknown command, missing subcommand, missing required flag, stray argument', async () => {
    const cases = [['frobnicate'], ['keys'], ['config'], ['admin', 'create'], ['migrate', 'extra'], ['admin', 'create', '--email']]
    for (const [args, r] of await Promise.all(cases.map(async (args) => [args, await runBinary(args)] as const))) {
      expect({ args, code: r.code }).toEqual({ args, code: 64 })
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1)
    }
    const v = await runBinary(['--version'])
    expect(v.code).toBe(0)
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
  }, 30_000)

  test('admin create takes --email=E as well as --email E', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'bw-admin-'))
    const r = await runBinary(['admin', 'create', '--email=first@example.com'], { cwd, stdin: 'a long passphrase for the owner 7\n' })
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('created owner first@example.com')
  }, 30_000)
})

describe('misspelled BULWARK_* variables', () => {
  test('development warns with the closest name and still starts', async () => {
    const s = await startBinary({ env: { BULWARK_LOG_LEVLE: 'debug', BULWARK_SECRET_FIEL: '/run/secrets/x' } })
    try {
      const warns = s.stdout().split('\n').filter((l) => l.includes('"level":"warn"'))
      expect(warns.some((l) => l.includes('BULWARK_LOG_LEVLE') && l.includes('did you mean BULWARK_LOG_LEVEL?'))).toBe(true)
      expect(warns.some((l) => l.includes('BULWARK_SECRET_FIEL') && l.includes('did you mean BULWARK_SECRET_FILE?'))).toBe(true)
    } finally {
      await s.stop()
    }
    const m = await runBinary(['migrate'], { env: { BULWARK_PROT: '3001' } })
    expect(m.code).toBe(0)
    expect(m.stderr).toContain('BULWARK_PROT is not a Bulwark setting; did you mean BULWARK_PORT?')
  }, 30_000)

  test('production refuses to start: exit 2, one line per problem', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'bw-prod-typo-'))
    const r = await runBinary(['serve'], { cwd, env: { ...PROD, BULWARK_PORT: '0', BULWARK_SECRT: 'x', BULWARK_CLAMD_FLIE: '/x' } })
    expect(r.code).toBe(2)
    const lines = r.stderr.trimEnd().split('\n')
    expect(lines.filter((l) => l.includes('BULWARK_SECRT is not a Bulwark setting; did you mean BULWARK_SECRET?'))).toHaveLength(1)
    expect(lines.filter((l) => l.includes('BULWARK_CLAMD_FLIE is not a Bulwark setting; did you mean BULWARK_CLAMD_FILE?'))).toHaveLength(1)
    expect(r.stdout).toBe('')
    expect(readdirSync(cwd)).toEqual([])
    // Without the typos the same production environment is accepted.
    const ok = await runBinary(['config', 'check'], { env: PROD })
    expect(ok.code).toBe(0)
  }, 30_000)
})

describe('the first start', () => {
  test('stderr says where it listens, the docs and how to create the first owner; stdout stays NDJSON', async () => {
    const s = await startBinary({ env: { BULWARK_ADMIN_EMAIL: '', BULWARK_ADMIN_PASSWORD: '' } })
    try {
      // The banner is written right after the listening line; give the pipe a moment to deliver it.
      for (let i = 0; i < 100 && !s.stderr().includes('admin create'); i++) await Bun.sleep(20)
      const err = s.stderr()
      expect(err).toContain(`listening on ${s.base}`)
      expect(err).toContain(`http://localhost:${s.port}/docs`)
      expect(err).toContain('no owner account yet')
      expect(err).toContain('bulwark admin create --email')
      for (const line of s.stdout().split('\n').filter(Boolean)) expect(() => JSON.parse(line)).not.toThrow()
    } finally {
      await s.stop()
    }
  }, 30_000)

  test('a first owner that the password policy refuses stops the start with exit 2 and the reasons, no stack trace', async () => {
    const r = await runBinary(['serve'], { env: { BULWARK_PORT: '0', BULWARK_ADMIN_EMAIL: OWNER_EMAIL, BULWARK_ADMIN_PASSWORD: 'short' } })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('cannot create the first owner')
    expect(r.stderr).not.toContain('    at ')
  }, 30_000)

  test('with an owner the banner does not ask for one', async () => {
    const s = await startBinary()
    try {
      for (let i = 0; i < 100 && !s.stderr().includes('API docs'); i++) await Bun.sleep(20)
      expect(s.stderr()).toContain('API docs')
      expect(s.stderr()).not.toContain('no owner account yet')
    } finally {
      await s.stop()
    }
  }, 30_000)
})

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString())

describe('BULWARK_PUBLIC_URL unset follows the listening port', () => {
  test('BULWARK_PORT=0: the token issuer, GET / and the log carry the bound port', async () => {
    const s = await startBinary()
    try {
      expect(s.port).toBeGreaterThan(0)
      const session = await signIn(s.base, OWNER_EMAIL, OWNER_PASSWORD)
      expect(claims(session.accessToken).iss).toBe(`http://localhost:${s.port}`)
      // The token verifies on the same server (the verifier pins the same issuer).
      expect((await call(s.base, 'GET', '/v1/me', { token: session.accessToken })).status).toBe(200)
      const index = await call(s.base, 'GET', '/')
      expect(index.status).toBe(200)
      expect(index.json).toMatchObject({ name: 'bulwark', issuer: `http://localhost:${s.port}`, jwks: `http://localhost:${s.port}/.well-known/jwks.json` })
      expect(s.stdout()).toContain(`"publicUrl":"http://localhost:${s.port}"`)
    } finally {
      await s.stop()
    }
  }, 30_000)

  test('a set BULWARK_PUBLIC_URL is kept whatever the port', async () => {
    const s = await startBinary({ env: { BULWARK_PUBLIC_URL: 'http://auth.test:8443' } })
    try {
      const session = await signIn(s.base, OWNER_EMAIL, OWNER_PASSWORD)
      expect(claims(session.accessToken).iss).toBe('http://auth.test:8443')
    } finally {
      await s.stop()
    }
  }, 30_000)
})
