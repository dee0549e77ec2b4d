/**
 * `bulwark keys rotate` run as a second process on the data folder of a live server: the server follows
 * the rotation on its own (no restart), and a restart afterwards keeps the overlap.
 */
import { expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import { call, runBinary, signIn, startBinary } from './harness'

const EMAIL = 'rotator@example.com'
const PASSWORD = 'a passphrase for the rotation test 7'

const kidOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()).kid as string
const kids = async (base: string) => ((await call(base, 'GET', '/.well-known/jwks.json')).json.keys as { kid: string }[]).map((k) => k.kid).sort()

/** Polls until `done` holds or 10 s pass (the server checks for rotations every 2 s); returns the last value. */
async function until<T>(get: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 10_000
  let v = await get()
  while (!done(v) && Date.now() < deadline) {
    await Bun.sleep(100)
    v = await get()
  }
  return v
}

test('a running server picks up `bulwark keys rotate` from another process: both kids published, new tokens on the new kid, old token valid, also after a restart', async () => {
  // A fixed issuer: with BULWARK_PUBLIC_URL unset the issuer follows the port, which changes with port 0 across the restart.
  const env = { BULWARK_SECRET: 'keys-rotate-binary-secret-0123456789-abcdefghij', BULWARK_PUBLIC_URL: 'http://localhost:3000' }
  const srv = await startBinary({ env, keep: true })
  const workdir = srv.workdir
  try {
    const before = await signIn(srv.base, EMAIL, PASSWORD, true)
    const oldKid = kidOf(before.accessToken)
    expect(await kids(srv.base)).toEqual([oldKid])

    // --help answers and does nothing (otherwise three kids would show up below).
    const help = await runBinary(['keys', 'rotate', '--help'], { cwd: workdir, env })
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('Usage: bulwark keys rotate')
    const r = await runBinary(['keys', 'rotate'], { cwd: workdir, env })
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(oldKid)

    const published = await until(() => kids(srv.base), (k) => k.length === 2)
    expect(published).toContain(oldKid)
    expect(published.length).toBe(2)
    const newKid = published.find((k) => k !== oldKid)!
    const after = await signIn(srv.base, EMAIL, PASSWORD)
    expect(kidOf(after.accessToken)).toBe(newKid)
    expect((await call(srv.base, 'GET', '/v1/me', { token: before.accessToken })).status).toBe(200)
    expect((await call(srv.base, 'GET', '/v1/me', { token: after.accessToken })).status).toBe(200)
    // RFC 6750 challenges from the binary: none sent vs. one sent and not valid.
    const none = await call(srv.base, 'GET', '/v1/me')
    expect([none.status, none.json.code, none.headers.get('www-authenticate')]).toEqual([401, 'unauthorized', 'Bearer realm="bulwark"'])
    const bad = await call(srv.base, 'GET', '/v1/me', { token: `${before.accessToken.slice(0, -4)}AAAA` })
    expect([bad.status, bad.json.code, bad.headers.get('www-authenticate')]).toEqual([401, 'invalid_token', 'Bearer realm="bulwark", error="invalid_token"'])
    await srv.stop()

    // A restart inside the overlap: the old token still works, both keys stay published.
    const again = await startBinary({ env, workdir })
    try {
      expect(await kids(again.base)).toEqual(published)
      expect((await call(again.base, 'GET', '/v1/me', { token: before.accessToken })).status).toBe(200)
      expect(kidOf((await signIn(again.base, EMAIL, PASSWORD)).accessToken)).toBe(newKid)
    } finally {
      await again.stop()
    }
  } finally {
    await srv.stop()
    rmSync(workdir, { recursive: true, force: true })
  }
}, 60_000)
