import { afterEach, describe, expect, test } from 'bun:test'
import { webhookDeliveries } from '../../src/db/tables'
import { isPrivateAddress, OutboundError, postOnce } from '../../src/lib/outbound'
import { expectProblem, STRONG_PASSWORD } from '../helpers'
import { eventsOf, makeAdminApp, seedUser } from '../support/admin'
import { receiver, verifies } from '../support/receiver'

type T = Awaited<ReturnType<typeof makeAdminApp>>
let t: T | undefined
const receivers: { stop(): void }[] = []
afterEach(() => {
  t?.close()
  t = undefined
  for (const r of receivers.splice(0)) r.stop()
})

async function app(env: Record<string, string> = {}) {
  t = await makeAdminApp({ BULWARK_WEBHOOK_ALLOW_PRIVATE: '1', ...env })
  // Signatures carry the (fake) clock's time; start it at the wall clock so the dates look real.
  t.clock.set(Date.now())
  return t
}
function recv(...args: Parameters<typeof receiver>) {
  const r = receiver(...args)
  receivers.push(r)
  return r
}
async function hook(a: T, admin: string, url: string, events = ['*']) {
  const res = await a.as(admin, 'POST', '/v1/webhooks', { body: { url, events, description: 'test' } })
  expect(res.status).toBe(201)
  return res.body as { id: string; secret: string }
}
const deliveries = (a: T, admin: string, id: string) => a.as(admin, 'GET', `/v1/webhooks/${id}/deliveries`).then((r) => r.body.items as any[])

describe('webhook endpoints', () => {
  test('admins create, read, change and delete endpoints; the secret is shown once; users are refused', async () => {
    const a = await app()
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const plain = await seedUser(a.deps)
    expectProblem(await a.as(plain, 'POST', '/v1/webhooks', { body: { url: 'http://127.0.0.1:9/x', events: ['user.created'] } }), 403, 'forbidden')
    expectProblem(await a.as(plain, 'GET', '/v1/webhooks'), 403, 'forbidden')
    const created = await hook(a, admin, 'http://127.0.0.1:9/x', ['user.created', 'role.granted'])
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    const list = await a.as(admin, 'GET', '/v1/webhooks')
    expect(list.status).toBe(200)
    expect(list.body.items.map((e: { id: string }) => e.id)).toEqual([created.id])
    expect(list.text).not.toContain(created.secret.slice(6))
    const one = await a.as(admin, 'GET', `/v1/webhooks/${created.id}`)
    expect(one.body).toMatchObject({ events: ['user.created', 'role.granted'], enabled: true, source: 'api' })
    expect(one.text).not.toContain(created.secret.slice(6))
    const patched = await a.as(admin, 'PATCH', `/v1/webhooks/${created.id}`, { body: { events: ['user.deleted'] } })
    expect(patched.body.events).toEqual(['user.deleted'])
    expectProblem(await a.as(admin, 'PATCH', `/v1/webhooks/${created.id}`, { body: { events: ['user.exploded'] } }), 422, 'validation_failed')
    expectProblem(await a.as(admin, 'POST', '/v1/webhooks', { body: { url: 'ftp://127.0.0.1/x', events: ['*'] } }), 422, 'webhook_url_refused')
    expectProblem(await a.as(admin, 'POST', '/v1/webhooks', { body: { url: 'http://u:p@127.0.0.1:9/x', events: ['*'] } }), 422, 'webhook_url_refused')
    expect((await a.as(admin, 'DELETE', `/v1/webhooks/${created.id}`)).status).toBe(204)
    expectProblem(await a.as(admin, 'GET', `/v1/webhooks/${created.id}`), 404, 'not_found')
    expect((await eventsOf(a.deps, 'webhook_created')).length).toBe(1)
    expect((await eventsOf(a.deps, 'webhook_deleted')).length).toBe(1)
  })

  test('without BULWARK_WEBHOOK_ALLOW_PRIVATE, loopback and private URLs are refused and nothing is sent', async () => {
    t = await makeAdminApp()
    const a = await t
    const r = recv()
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    for (const url of [r.url, `http://localhost:${r.port}/`, `http://[::1]:${r.port}/`, `http://[::ffff:127.0.0.1]:${r.port}/`, 'http://10.1.2.3/', 'http://169.254.169.254/latest', 'http://100.64.0.1/', 'http://[fd00::1]/', 'http://[fe80::1]/', 'http://0.0.0.0/']) {
      expectProblem(await a.as(admin, 'POST', '/v1/webhooks', { body: { url, events: ['*'] } }), 422, 'webhook_url_refused')
    }
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    await a.deps.webhookWorker.deliverDue()
    expect(r.got.length).toBe(0)
  })
})

describe('webhook delivery', () => {
  test('real sign-ups and role grants are delivered, signed as Standard Webhooks (checked with the standardwebhooks package)', async () => {
    const a = await app()
    const r = recv()
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { secret, id } = await hook(a, admin, `${r.url}/hook`, ['user.created', 'role.granted'])
    const reg = await a.req('POST', '/v1/auth/register', { body: { email: 'hooked@example.com', password: STRONG_PASSWORD } })
    expect(reg.status).toBe(201)
    const userId = reg.body.user.id
    expect((await a.as(admin, 'PUT', `/v1/users/${userId}/roles/moderator`)).status).toBeLessThan(300)
    await a.deps.audit.record({ type: 'login', outcome: 'success', actorId: userId, targetId: userId }) // not subscribed
    // Queued durably before the request answered: the rows are there before any worker ran.
    expect((await a.deps.db.select().from(webhookDeliveries)).length).toBe(2)
    const report = await a.deps.webhookWorker.deliverDue()
    expect(report).toEqual({ delivered: 2, failed: 0 })
    expect(r.got.map((m) => m.json.type)).toEqual(['user.created', 'role.granted'])
    for (const m of r.got) {
      expect(verifies(secret, m)).toBe(true)
      expect(m.id).toMatch(/^msg_[0-9a-f]{32}$/)
      expect(Number(m.timestamp)).toBe(Math.floor(a.clock.now() / 1000))
      expect(m.headers['content-type']).toBe('application/json')
    }
    expect(r.got[0]!.json.data.userId).toBe(userId)
    expect(r.got[1]!.json.data).toMatchObject({ userId, actorId: admin })
    // A tampered body or another secret does not verify.
    expect(verifies(secret, { ...r.got[0]!, body: r.got[0]!.body.replace('user.created', 'user.deleted') })).toBe(false)
    expect(verifies('whsec_' + Buffer.alloc(32, 1).toString('base64'), r.got[0]!)).toBe(false)
    const log = await deliveries(a, admin, id)
    expect(log.map((d) => d.status)).toEqual(['succeeded', 'succeeded'])
    expect(JSON.stringify(log)).not.toContain(secret.slice(6))
    // Delivered once: another round sends nothing.
    await a.deps.webhookWorker.deliverDue()
    expect(r.got.length).toBe(2)
  })

  test('a failing endpoint is retried on the backoff schedule (fake clock) until it recovers; the log shows every attempt', async () => {
    const a = await app()
    const r = recv((_m, n) => new Response('down', { status: n <= 2 ? 500 : 200 }))
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { id, secret } = await hook(a, admin, r.url)
    await a.deps.audit.record({ type: 'user_deleted', outcome: 'success', actorId: admin, targetId: 'gone' })
    expect(await a.deps.webhookWorker.deliverDue()).toEqual({ delivered: 0, failed: 1 })
    let [d] = await deliveries(a, admin, id)
    expect(d).toMatchObject({ status: 'pending', attempts: 1, lastStatus: 500, lastError: 'answered 500' })
    const wait = Date.parse(d.nextAttemptAt) - a.clock.now()
    expect(wait).toBeGreaterThanOrEqual(5_000)
    expect(wait).toBeLessThanOrEqual(5_500)
    // Not due yet: nothing is sent.
    a.clock.advance(4_000)
    expect(await a.deps.webhookWorker.deliverDue()).toEqual({ delivered: 0, failed: 0 })
    a.clock.advance(2_000)
    expect(await a.deps.webhookWorker.deliverDue()).toEqual({ delivered: 0, failed: 1 })
    ;[d] = await deliveries(a, admin, id)
    const second = Date.parse(d.nextAttemptAt) - a.clock.now()
    expect(second).toBeGreaterThanOrEqual(5 * 60_000)
    expect(second).toBeLessThanOrEqual(5.5 * 60_000)
    a.clock.advance(second)
    expect(await a.deps.webhookWorker.deliverDue()).toEqual({ delivered: 1, failed: 0 })
    ;[d] = await deliveries(a, admin, id)
    expect(d).toMatchObject({ status: 'succeeded', attempts: 3, lastStatus: 200, lastError: null, nextAttemptAt: null })
    expect(d.history.map((h: { status: number }) => h.status)).toEqual([500, 500, 200])
    // Every attempt carried the same webhook-id and a valid signature.
    expect(new Set(r.got.map((m) => m.id)).size).toBe(1)
    expect(r.got.every((m) => verifies(secret, m))).toBe(true)
    expect((await a.as(admin, 'GET', `/v1/webhooks/${id}`)).body.consecutiveFailures).toBe(0)
  })

  test('secret rotation: during the overlap both secrets sign; afterwards only the new one', async () => {
    const a = await app()
    const r = recv()
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { id, secret: old } = await hook(a, admin, r.url)
    const rot = await a.as(admin, 'POST', `/v1/webhooks/${id}/secret`, { body: { overlap: '1h' } })
    expect(rot.status).toBe(200)
    const fresh = rot.body.secret as string
    expect(fresh).toMatch(/^whsec_/)
    expect(fresh).not.toBe(old)
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    await a.deps.webhookWorker.deliverDue()
    expect(r.got[0]!.signature.split(' ').length).toBe(2)
    expect(verifies(old, r.got[0]!)).toBe(true)
    expect(verifies(fresh, r.got[0]!)).toBe(true)
    a.clock.advance(61 * 60_000)
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    await a.deps.webhookWorker.deliverDue()
    expect(r.got[1]!.signature.split(' ').length).toBe(1)
    expect(verifies(fresh, r.got[1]!)).toBe(true)
    expect(verifies(old, r.got[1]!)).toBe(false)
    expectProblem(await a.as(admin, 'POST', `/v1/webhooks/${id}/secret`, { body: { overlap: '30d' } }), 422, 'validation_failed')
  })

  test('persistent failure disables the endpoint (audited); new events are not queued; PATCH enabled:true re-enables it', async () => {
    const a = await app({ BULWARK_WEBHOOK_DISABLE_FAILURES: '3' })
    let up = false
    const r = recv(() => new Response(null, { status: up ? 204 : 503 }))
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { id } = await hook(a, admin, r.url)
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    await a.deps.webhookWorker.deliverDue() // two failed attempts
    a.clock.advance(6_000)
    await a.deps.webhookWorker.deliverDue() // the third failure disables it
    const ep = (await a.as(admin, 'GET', `/v1/webhooks/${id}`)).body
    expect(ep).toMatchObject({ enabled: false, consecutiveFailures: 3 })
    expect(ep.disabledReason).toContain('3 failed attempts')
    expect((await eventsOf(a.deps, 'webhook_disabled')).map((e) => e.targetId)).toEqual([id])
    const sent = r.got.length
    expect(sent).toBe(3)
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    a.clock.advance(3_600_000)
    await a.deps.webhookWorker.deliverDue()
    expect(r.got.length).toBe(sent)
    expect((await deliveries(a, admin, id)).length).toBe(2)
    up = true
    const re = await a.as(admin, 'PATCH', `/v1/webhooks/${id}`, { body: { enabled: true } })
    expect(re.body).toMatchObject({ enabled: true, consecutiveFailures: 0, disabledReason: null })
    await a.deps.webhookWorker.deliverDue()
    expect((await deliveries(a, admin, id)).map((d) => d.status)).toEqual(['succeeded', 'succeeded'])
  })

  test('the time rule: an endpoint failing for longer than BULWARK_WEBHOOK_DISABLE_AFTER is disabled', async () => {
    const a = await app({ BULWARK_WEBHOOK_DISABLE_AFTER: '1h', BULWARK_WEBHOOK_RETRY_SCHEDULE: '30m,30m,30m' })
    const r = recv(() => new Response(null, { status: 500 }))
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { id } = await hook(a, admin, r.url)
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    for (let i = 0; i < 2; i++) {
      await a.deps.webhookWorker.deliverDue()
      a.clock.advance(34 * 60_000)
    }
    expect((await a.as(admin, 'GET', `/v1/webhooks/${id}`)).body.enabled).toBe(true)
    await a.deps.webhookWorker.deliverDue()
    expect((await a.as(admin, 'GET', `/v1/webhooks/${id}`)).body.enabled).toBe(false)
  })

  test('after the last scheduled attempt a delivery is failed; a manual retry sends it again with the same id', async () => {
    const a = await app({ BULWARK_WEBHOOK_RETRY_SCHEDULE: '1s' })
    let up = false
    const r = recv(() => new Response(null, { status: up ? 200 : 502 }))
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { id } = await hook(a, admin, r.url)
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    await a.deps.webhookWorker.deliverDue()
    a.clock.advance(2_000)
    await a.deps.webhookWorker.deliverDue()
    let [d] = await deliveries(a, admin, id)
    expect(d).toMatchObject({ status: 'failed', attempts: 2, nextAttemptAt: null, lastStatus: 502 })
    a.clock.advance(3_600_000)
    await a.deps.webhookWorker.deliverDue()
    expect(r.got.length).toBe(2)
    const plain = await seedUser(a.deps)
    expectProblem(await a.as(plain, 'POST', `/v1/webhooks/${id}/deliveries/${d.id}/retry`), 403)
    expectProblem(await a.as(admin, 'POST', `/v1/webhooks/${id}/deliveries/msg_${'0'.repeat(32)}/retry`), 404, 'not_found')
    up = true
    const retry = await a.as(admin, 'POST', `/v1/webhooks/${id}/deliveries/${d.id}/retry`)
    expect(retry.status).toBe(202)
    expect(retry.body.status).toBe('pending')
    await a.deps.webhookWorker.deliverDue()
    ;[d] = await deliveries(a, admin, id)
    expect(d).toMatchObject({ status: 'succeeded', attempts: 3, lastStatus: 200 })
    expect(new Set(r.got.map((m) => m.id)).size).toBe(1)
    expect((await eventsOf(a.deps, 'webhook_redelivery')).length).toBe(1)
  })

  test('the delivery log is keyset-paginated, newest first', async () => {
    const a = await app()
    const r = recv()
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { id } = await hook(a, admin, r.url)
    for (let i = 0; i < 5; i++) await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: `u${i}` })
    const p1 = await a.as(admin, 'GET', `/v1/webhooks/${id}/deliveries?limit=2`)
    expect(p1.body.items.length).toBe(2)
    const p2 = await a.as(admin, 'GET', `/v1/webhooks/${id}/deliveries?limit=2&cursor=${encodeURIComponent(p1.body.nextCursor)}`)
    const p3 = await a.as(admin, 'GET', `/v1/webhooks/${id}/deliveries?limit=2&cursor=${encodeURIComponent(p2.body.nextCursor)}`)
    expect(p3.body.nextCursor).toBeNull()
    const ids = [...p1.body.items, ...p2.body.items, ...p3.body.items].map((d: { id: string }) => d.id)
    expect(ids.length).toBe(5)
    expect([...ids].sort().reverse()).toEqual(ids)
    expectProblem(await a.as(admin, 'GET', `/v1/webhooks/${id}/deliveries?cursor=x.y`), 400, 'invalid_cursor')
  })

  test('a redirect is not followed: the 302 is the answer and the second receiver sees nothing', async () => {
    const a = await app()
    const second = recv()
    const first = recv(() => new Response(null, { status: 302, headers: { location: `${second.url}/elsewhere` } }))
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { id } = await hook(a, admin, first.url)
    await a.deps.audit.record({ type: 'register', outcome: 'success', actorId: admin, targetId: admin })
    await a.deps.webhookWorker.deliverDue()
    expect(first.got.length).toBe(1)
    expect(second.got.length).toBe(0)
    const [d] = await deliveries(a, admin, id)
    expect(d).toMatchObject({ status: 'pending', lastStatus: 302, lastError: 'redirect (302) not followed' })
  })

  test('BULWARK_ALERT_WEBHOOK_URL is kept as a signed security.alert endpoint', async () => {
    const r = recv()
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`
    const a = await app({ BULWARK_ALERT_WEBHOOK_URL: `${r.url}/alerts`, BULWARK_ALERT_WEBHOOK_SECRET: secret })
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const list = (await a.as(admin, 'GET', '/v1/webhooks')).body.items
    expect(list).toMatchObject([{ source: 'config', events: ['security.alert'], url: `${r.url}/alerts` }])
    await a.deps.audit.record({ type: 'login', outcome: 'success', actorId: 'u1' })
    await a.deps.audit.record({ type: 'refresh_token_reuse', outcome: 'failure', targetId: 'u2', details: { sessionId: 's1' } }, { ip: '192.0.2.1', requestId: 'r-12345678' })
    await a.deps.webhookWorker.deliverDue()
    expect(r.got.length).toBe(1)
    expect(r.got[0]!.json).toMatchObject({ type: 'security.alert', data: { event: 'refresh_token_reuse', targetId: 'u2', ip: '192.0.2.1', requestId: 'r-12345678' } })
    expect(verifies(secret, r.got[0]!)).toBe(true)
  })
})

describe('outbound client (src/lib/outbound.ts)', () => {
  test('classifies special-purpose addresses, IPv4 and IPv6 alike', () => {
    for (const ip of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fd12::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '64:ff9b::a00:1']) {
      expect([ip, isPrivateAddress(ip)]).toEqual([ip, true])
    }
    for (const ip of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:8.8.8.8']) expect([ip, isPrivateAddress(ip)]).toEqual([ip, false])
  })

  test('a host name resolving to loopback is refused at connection time unless private targets are allowed', async () => {
    const r = recv()
    const opts = { headers: { 'content-type': 'application/json' }, body: '{}', timeoutMs: 2000 }
    const err = await postOnce(`http://localhost:${r.port}/x`, { ...opts, allowPrivate: false }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OutboundError)
    expect((err as OutboundError).reason).toBe('refused')
    expect(r.got.length).toBe(0)
    const ok = await postOnce(`http://localhost:${r.port}/x`, { ...opts, allowPrivate: true })
    expect(ok.status).toBe(204)
    expect(r.got.length).toBe(1)
    expect(r.got[0]!.headers.host).toBe(`localhost:${r.port}`)
  })

  test('the answer is read only up to the bound, and a slow receiver times out', async () => {
    const big = recv(() => new Response('x'.repeat(1_000_000)))
    const res = await postOnce(big.url, { headers: {}, body: '{}', timeoutMs: 2000, allowPrivate: true, maxResponseBytes: 1000 })
    expect(res.status).toBe(200)
    expect(res.body.length).toBe(1000)
    const slow = recv(() => new Promise<Response>(() => {}))
    const err = await postOnce(slow.url, { headers: {}, body: '{}', timeoutMs: 200, allowPrivate: true }).catch((e: unknown) => e)
    expect((err as OutboundError).reason).toBe('timeout')
  })
})

describe('master-secret rotation', () => {
  test('bulwark secret rotate re-encrypts webhook secrets (current and previous), and they still sign', async () => {
    const { rotateSecret } = await import('../../src/modules/keys/secret')
    const { deriveKey, decrypt } = await import('../../src/lib/crypto')
    const { webhookEndpoints } = await import('../../src/db/tables')
    const a = await app()
    const admin = await seedUser(a.deps, { roles: ['admin'] })
    const { id, secret: old } = await hook(a, admin, 'http://127.0.0.1:9/x')
    const fresh = (await a.as(admin, 'POST', `/v1/webhooks/${id}/secret`, { body: { overlap: '1h' } })).body.secret as string
    const next = 'another-secret-0123456789-abcdefghijklmnopqrstuvwxyz'
    const r = await rotateSecret(a.deps.db, a.deps.config.secret!, next, a.clock.now())
    expect(r.reencrypted.webhook_endpoints).toBe(2)
    const row = (await a.deps.db.select().from(webhookEndpoints))[0]!
    const key = deriveKey(next, 'encryption')
    expect(decrypt(key, row.secretEnc, `whsec:${id}`)).toBe(fresh)
    expect(decrypt(key, row.previousSecretEnc!, `whsec-prev:${id}`)).toBe(old)
  })
})
