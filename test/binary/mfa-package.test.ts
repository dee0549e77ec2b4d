/**
 * The compiled binary over real sockets: the owner's factor reset (with the enrolment rules on the way),
 * the MFA rule for administrative roles, and two instances surviving a restart of their Redis.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { createHmac } from 'node:crypto'
import { OwnRedis } from '../support/own-redis'
import { call, OWNER_EMAIL, OWNER_PASSWORD, signIn, startBinary, type Running } from './harness'

let running: Running[] = []
let redis: OwnRedis | undefined
afterEach(async () => {
  // Stop in reverse order: instances sharing the first one's folder go before it removes the folder.
  for (const r of running.reverse()) await r.stop()
  running = []
  await redis?.stop()
  redis = undefined
})

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of a base32 secret, now. */
function totp(secretB32: string): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0
  let value = 0
  const bytes: number[] = []
  for (const ch of secretB32.replace(/=+$/, '')) {
    value = (value << 5) | A.indexOf(ch)
    bits += 5
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000)))
  const mac = createHmac('sha1', Buffer.from(bytes)).update(msg).digest()
  const off = mac[mac.length - 1]! & 0x0f
  return String((((mac[off]! & 0x7f) << 24) | (mac[off + 1]! << 16) | (mac[off + 2]! << 8) | mac[off + 3]!) % 1_000_000).padStart(6, '0')
}

async function enrolTotp(base: string, token: string) {
  const e = await call(base, 'POST', '/v1/me/mfa/totp', { token })
  expect(e.status).toBe(200)
  const c = await call(base, 'POST', '/v1/me/mfa/totp/confirm', { token, body: { code: totp(e.json.secret) } })
  expect(c.status).toBe(200)
  expect(c.json.recoveryCodes).toHaveLength(10)
}

describe('binary: second factors and administrative roles', () => {
  test('the confined owner enrols without a step-up, creates an administrative role (MFA on by default, an owner may waive it) and resets a user’s factors', async () => {
    const bin = await startBinary()
    running.push(bin)
    // The first owner is created just after the server listens.
    for (let i = 0; i < 200 && !bin.stdout().includes('created the first owner'); i++) await Bun.sleep(10)
    const owner = await signIn(bin.base, OWNER_EMAIL, OWNER_PASSWORD)
    expect((await call(bin.base, 'GET', '/v1/users', { token: owner.accessToken })).json.code).toBe('mfa_enrollment_required')
    await enrolTotp(bin.base, owner.accessToken) // first enrolment of a confined session: no step-up needed

    // An admin-grade role: MFA on by default, an owner's waiver is accepted.
    const role = await call(bin.base, 'POST', '/v1/roles', { token: owner.accessToken, body: { name: 'helpdesk', level: 40, permissions: ['users:read', 'sessions:revoke'] } })
    expect(role.status).toBe(201)
    expect(role.json.mfaRequired).toBe(true)
    expect((await call(bin.base, 'PATCH', '/v1/roles/helpdesk', { token: owner.accessToken, body: { mfaRequired: false } })).json.mfaRequired).toBe(false)

    const user = await signIn(bin.base, 'lost-phone@example.com', 'violet tractor sings quietly', true)
    await enrolTotp(bin.base, user.accessToken)
    const self = await call(bin.base, 'DELETE', `/v1/users/${owner.userId}/mfa`, { token: owner.accessToken })
    expect(self.status).toBe(403)
    const r = await call(bin.base, 'DELETE', `/v1/users/${user.userId}/mfa`, { token: owner.accessToken })
    expect(r.status).toBe(200)
    expect(r.json).toEqual({ totp: true, passkeys: 0, recoveryCodes: 10, sessionsEnded: 1 })
    expect((await call(bin.base, 'GET', '/v1/me', { token: user.accessToken })).status).toBe(401)
    const again = await signIn(bin.base, 'lost-phone@example.com', 'violet tractor sings quietly')
    expect((await call(bin.base, 'GET', '/v1/me', { token: again.accessToken })).json.mfa).toEqual({ totp: false, passkeys: 0 })
  }, 20_000)

  test.skipIf(!OwnRedis.available())('two instances on one database: after their Redis restarts, a logout made meanwhile is refused on the other (needs redis-server)', async () => {
    redis = new OwnRedis()
    await redis.start()
    // Instances behind one load balancer share one public URL (the issuer); unset, each would follow its own port.
    const env = { BULWARK_REDIS_URL: redis.url, BULWARK_REDIS_PREFIX: `bwbin-${crypto.randomUUID()}:`, BULWARK_PUBLIC_URL: 'http://localhost:3000' }
    const a = await startBinary({ env })
    running.push(a)
    const b = await startBinary({ env, workdir: a.workdir })
    running.push(b)
    const relay = async (x: Running) => (await call(x.base, 'GET', '/health/ready')).json.checks.relay?.status
    const until = async (check: () => Promise<boolean>, ms = 5000) => {
      const end = Date.now() + ms
      while (Date.now() < end) {
        if (await check()) return true
        await Bun.sleep(25)
      }
      return false
    }
    expect(await until(async () => (await relay(a)) === 'ok' && (await relay(b)) === 'ok')).toBe(true)
    const s = await signIn(a.base, 'two-instances@example.com', 'violet tractor sings quietly', true)
    expect((await call(b.base, 'GET', '/v1/me', { token: s.accessToken })).status).toBe(200)
    await redis.stop()
    expect(await until(async () => (await relay(b)) === 'degraded')).toBe(true)
    expect((await call(a.base, 'POST', '/v1/auth/logout', { token: s.accessToken })).status).toBe(204)
    await redis.start()
    expect(await until(async () => (await relay(b)) === 'ok')).toBe(true)
    expect((await call(b.base, 'GET', '/v1/me', { token: s.accessToken })).status).toBe(401)
    // Subscribed again: a live logout on A reaches B.
    expect(await until(async () => (await relay(a)) === 'ok')).toBe(true)
    const t = await signIn(a.base, 'two-instances@example.com', 'violet tractor sings quietly')
    expect((await call(b.base, 'GET', '/v1/me', { token: t.accessToken })).status).toBe(200)
    expect((await call(a.base, 'POST', '/v1/auth/logout', { token: t.accessToken })).status).toBe(204)
    expect(await until(async () => (await call(b.base, 'GET', '/v1/me', { token: t.accessToken })).status === 401, 2000)).toBe(true)
    expect(b.stdout().split('\n').filter((l) => l.includes('cache invalidation relay is not subscribed')).length).toBe(1)
  }, 20_000)
})
