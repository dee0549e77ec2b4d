/**
 * An app developer's flow against the compiled binary, running the README's own examples ("Integrating your
 * app": App permissions, API keys) with curl over real sockets: register orders:read/orders:refund, a role
 * holding orders:*, grant it, check with the user's token and in a batch; a personal API key on /v1/me and
 * /v1/authz/check; revoked, the next request is 401.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { join } from 'node:path'
import { ownerWithTotp, RAISED_LIMITS, type OwnerSession } from './accounts'
import { call, ROOT, signIn, startBinary, type Running, type Session } from './harness'

let bin: Running
let owner: OwnerSession
let user: Session

/** The ```sh blocks of one subsection of "## Integrating your app". */
async function examples(heading: string): Promise<string[]> {
  const readme = await Bun.file(join(ROOT, 'README.md')).text()
  const section = readme.slice(readme.indexOf('## Integrating your app'))
  const start = section.indexOf(`### ${heading}\n`)
  expect(start).toBeGreaterThan(0)
  const end = section.indexOf('\n### ', start + 5)
  const sub = section.slice(start, end < 0 ? section.indexOf('\n## ', start) : end)
  return [...sub.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
}

/** Runs an example with bash -e; returns stdout lines (curl answers carry no newline; answers() splits them). */
async function run(script: string, env: Record<string, string>): Promise<string> {
  const p = Bun.spawn(['bash', '-euo', 'pipefail', '-c', script], { env: { PATH: process.env.PATH ?? '', ...env }, stdout: 'pipe', stderr: 'pipe' })
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
  if (code !== 0) throw new Error(`example failed (${code}): ${err}\n${out}`)
  return out
}

const answers = (out: string) => out.replace(/\}(?=[{0-9])/g, '}\n').split('\n').filter((l) => l.trim()).map((l) => (l.startsWith('{') ? JSON.parse(l) : l.trim()))

beforeAll(async () => {
  bin = await startBinary({ env: RAISED_LIMITS })
  owner = await ownerWithTotp(bin)
  user = await signIn(bin.base, 'clerk@example.com', 'clerk passphrase for binary 9', true)
}, 180_000)
afterAll(async () => {
  await bin?.stop()
})

test('README app permissions: register, role with orders:*, grant, check by token and in a batch', async () => {
  const env = { BULWARK: bin.base, ADMIN_TOKEN: owner.accessToken, SERVICE_TOKEN: owner.accessToken, USER_TOKEN: user.accessToken, USER_ID: user.userId }
  const before = await call(bin.base, 'POST', '/v1/authz/check', { token: owner.accessToken, body: { token: user.accessToken, permission: 'orders:read' } })
  expect(before.status).toBe(422)
  expect(before.json.code).toBe('unknown_permission')
  const [setup, check] = await examples('App permissions')
  const made = answers(await run(setup!, env))
  expect(made[0]).toEqual({ name: 'orders:read', description: 'Read orders', builtin: false })
  expect(made[1]).toEqual({ name: 'orders:refund', description: 'Refund an order', builtin: false })
  expect(made[2]).toMatchObject({ name: 'clerk', permissions: ['orders:*'] })
  const got = answers(await run(check!, env))
  expect(got[0]).toEqual({ allowed: true, reason: 'granted by role clerk via orders:*' })
  expect(got[1]).toEqual({ results: [{ allowed: true, reason: 'granted by role clerk via orders:*' }, { allowed: false, reason: 'no role grants users:delete' }] })
  // The comments in the README show exactly these answers.
  expect(check).toContain(JSON.stringify(got[0]))
  expect(check).toContain(JSON.stringify(got[1]))
  const list = await call(bin.base, 'GET', '/v1/permissions', { token: owner.accessToken })
  expect(list.json.items.filter((p: any) => !p.builtin).map((p: any) => p.name)).toEqual(['orders:read', 'orders:refund'])
  // Shadowing a built-in is refused by the binary too.
  const shadow = await call(bin.base, 'POST', '/v1/permissions', { token: owner.accessToken, body: { name: 'users:export' } })
  expect([shadow.status, shadow.json.code]).toEqual([422, 'reserved_permission'])
}, 30_000)

test('README API keys: create, /v1/me and /v1/authz/check with the key, revoke, next request 401', async () => {
  const env = { BULWARK: bin.base, SERVICE_TOKEN: owner.accessToken, USER_TOKEN: user.accessToken }
  const [script] = await examples('API keys')
  const got = answers(await run(script!, env))
  expect(got[0]).toMatchObject({ id: user.userId, email: 'clerk@example.com' })
  expect(got[0].permissions).toContain('orders:read')
  expect(got[1]).toEqual({ allowed: true, reason: 'granted by role clerk via orders:*; within the API key scope' })
  expect(got.slice(2)).toEqual(['204', '401'])
  // A key is refused on credential routes, also by the binary.
  const k = await call(bin.base, 'POST', '/v1/me/api-keys', { token: user.accessToken, body: { name: 'second' } })
  expect(k.json.key).toMatch(/^bwk_[0-9A-Za-z]{36}$/)
  const refused = await call(bin.base, 'POST', '/v1/me/api-keys', { token: k.json.key, body: { name: 'third' } })
  expect([refused.status, refused.json.code]).toEqual([403, 'api_key_not_allowed'])
  const all = await call(bin.base, 'GET', '/v1/api-keys', { token: owner.accessToken })
  expect(all.json.items.length).toBe(2)
  expect(all.text).not.toContain(k.json.key)
}, 30_000)
