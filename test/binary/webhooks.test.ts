/**
 * Webhooks against the compiled binary: deliveries verified with the `standardwebhooks` package, and the
 * outbox surviving a stop: events queued while the endpoint fails and while the server is down (a
 * `bulwark admin create` run) arrive after the restart, each exactly once.
 */
import { afterAll, expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import { dbRows, ownerWithTotp, RAISED_LIMITS } from './accounts'
import { call, runBinary, startBinary } from './harness'
import { receiver, verifies } from '../support/receiver'

const cleanup: (() => void)[] = []
afterAll(() => {
  for (const c of cleanup) c()
})

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return
    await Bun.sleep(25)
  }
  throw new Error(`timed out waiting for ${what}`)
}

test('deliveries are signed, and pending ones survive a restart of the binary: each arrives once', async () => {
  let up = true
  const ok: string[] = []
  const r = receiver((m) => {
    if (!up) return new Response('down', { status: 503 })
    ok.push(m.id)
    return new Response(null, { status: 204 })
  })
  cleanup.push(r.stop)
  const env = { ...RAISED_LIMITS, BULWARK_WEBHOOK_ALLOW_PRIVATE: '1', BULWARK_WEBHOOK_RETRY_SCHEDULE: '1s,1s,1s,1s,1s,1s,1s,1s,1s,1s', BULWARK_WEBHOOK_POLL_INTERVAL: '100ms' }
  const bin = await startBinary({ env, keep: true })
  cleanup.push(() => rmSync(bin.workdir, { recursive: true, force: true }))
  const owner = await ownerWithTotp(bin)
  const created = await call(bin.base, 'POST', '/v1/webhooks', { token: owner.accessToken, body: { url: `${r.url}/hook`, events: ['user.created'] } })
  expect(created.status).toBe(201)
  const { id, secret } = created.json as { id: string; secret: string }

  const reg = await call(bin.base, 'POST', '/v1/auth/register', { body: { email: 'first@example.com', password: 'a long passphrase for hooks 1' } })
  expect(reg.status).toBe(201)
  await until('the first delivery', () => ok.length === 1)
  const first = r.got.find((m) => m.id === ok[0])!
  expect(first.json).toMatchObject({ type: 'user.created', data: { userId: reg.json.user.id } })
  expect(verifies(secret, first)).toBe(true)

  // The receiver fails: two more sign-ups stay pending; then the server stops.
  up = false
  for (const email of ['second@example.com', 'third@example.com']) {
    expect((await call(bin.base, 'POST', '/v1/auth/register', { body: { email, password: 'a long passphrase for hooks 1' } })).status).toBe(201)
  }
  await until('failed attempts of both', () => new Set(r.got.filter((m) => m.json.type === 'user.created').map((m) => m.id)).size === 3)
  expect(await bin.stop()).toBe(0)

  // While the server is down, a command-line owner creation queues one more event.
  const beforeCli = r.got.length
  const cli = await runBinary(['admin', 'create', '--email', 'cli-owner@example.com'], { cwd: bin.workdir, env: { BULWARK_WEBHOOK_ALLOW_PRIVATE: '1' }, stdin: 'a long passphrase for hooks 2\n' })
  expect(cli.code).toBe(0)
  // The command only queues: nothing is delivered until a server runs (which may start delivering at once).
  expect(r.got.length).toBe(beforeCli)
  up = true
  const again = await startBinary({ env, workdir: bin.workdir })
  cleanup.push(() => void again.stop())
  await until('every pending delivery', () => ok.length === 4)
  // The issuer follows the port, which changed, so the old token is not accepted: read the log from the file.
  const rowsOf = () => dbRows<{ id: string; status: string }>(bin.workdir, 'SELECT id, status FROM webhook_deliveries WHERE endpoint_id = ?', [id])
  // The receiver answers before the binary records the outcome.
  let rows = await rowsOf()
  for (let i = 0; i < 200 && !rows.every((d) => d.status === 'succeeded'); i++) {
    await Bun.sleep(50)
    rows = await rowsOf()
  }
  expect(rows.length).toBe(4)
  expect(rows.map((d) => d.id).sort()).toEqual([...ok].sort())
  // Each event exactly once with a 2xx, every attempt verifiable, and the CLI-queued one among them.
  expect(new Set(ok).size).toBe(4)
  expect(r.got.every((m) => verifies(secret, m))).toBe(true)
  const cliOwner = /\(([0-9a-f-]{36})\)/.exec(cli.stdout)![1]
  expect(r.got.filter((m) => m.json.data.userId === cliOwner).length).toBe(1)
  expect(await again.stop()).toBe(0)
}, 60_000)

test('without BULWARK_WEBHOOK_ALLOW_PRIVATE the binary refuses a loopback webhook and sends nothing', async () => {
  const r = receiver()
  cleanup.push(r.stop)
  const bin = await startBinary({ env: RAISED_LIMITS })
  try {
    const owner = await ownerWithTotp(bin)
    const res = await call(bin.base, 'POST', '/v1/webhooks', { token: owner.accessToken, body: { url: `${r.url}/hook`, events: ['*'] } })
    expect(res.status).toBe(422)
    expect(res.json.code).toBe('webhook_url_refused')
    expect(r.got.length).toBe(0)
  } finally {
    await bin.stop()
  }
}, 30_000)
