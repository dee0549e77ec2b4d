import { describe, expect, test } from 'bun:test'
import { verify as argonVerify } from '@node-rs/argon2'
import { testConfig } from '../../src/config'
import { Gate, normalizePassword, PasswordHasher } from '../../src/lib/password'

const params = testConfig().password
const hasher = new PasswordHasher(params)

describe('PasswordHasher', () => {
  test('hashes to an argon2id PHC string at the configured cost and verifies it', async () => {
    const h = await hasher.hash('correct horse battery staple')
    expect(h).toStartWith(`$argon2id$v=19$m=${params.argon2MemoryKib},t=${params.argon2Time},p=1$`)
    expect(await hasher.verify('correct horse battery staple', h)).toBe(true)
    expect(await hasher.verify('correct horse battery stapler', h)).toBe(false)
  })

  test('salts every hash', async () => {
    expect(await hasher.hash('same password here')).not.toBe(await hasher.hash('same password here'))
  })

  test('normalises to NFKC: composed and decomposed forms, and full-width letters, match', async () => {
    const composed = 'caf\u00e9 au lait long'
    const decomposed = 'cafe\u0301 au lait long'
    expect(composed).not.toBe(decomposed)
    const h = await hasher.hash(composed)
    expect(await hasher.verify(decomposed, h)).toBe(true)
    expect(normalizePassword('\uff21\uff22\uff23')).toBe('ABC')
    expect(await hasher.verify('\uff21\uff22\uff23 long enough', await hasher.hash('ABC long enough'))).toBe(true)
  })

  test('verify is false, not an exception, for malformed or foreign hashes', async () => {
    for (const bad of ['', 'plain', '$argon2id$v=19$m=1024,t=1,p=1$abc', '$2b$10$abcdefghijklmnopqrstuv', '$argon2id$v=19$m=1024,t=1,p=1$AAAA$!!!!']) {
      expect(await hasher.verify('whatever password', bad)).toBe(false)
    }
  })

  test('verifies a hash made by Bun.password (same PHC format)', async () => {
    const h = await Bun.password.hash(normalizePassword('from bun password'), { algorithm: 'argon2id', memoryCost: 1024, timeCost: 1 })
    expect(await hasher.verify('from bun password', h)).toBe(true)
    expect(await Bun.password.verify('from bun password', await hasher.hash('from bun password'))).toBe(true)
  })

  test('needsRehash is true when memory, time or parallelism differ, or the hash is not argon2id', async () => {
    const h = await hasher.hash('a password to rehash')
    expect(hasher.needsRehash(h)).toBe(false)
    const stronger = new PasswordHasher({ argon2MemoryKib: params.argon2MemoryKib * 2, argon2Time: params.argon2Time })
    expect(stronger.needsRehash(h)).toBe(true)
    const slower = new PasswordHasher({ argon2MemoryKib: params.argon2MemoryKib, argon2Time: params.argon2Time + 1 })
    expect(slower.needsRehash(h)).toBe(true)
    expect(hasher.needsRehash(h.replace(',p=1$', ',p=2$'))).toBe(true)
    expect(hasher.needsRehash('$2b$10$abcdefghijklmnopqrstuv')).toBe(true)
    // a hash at the old cost still verifies after the configuration changed
    expect(await stronger.verify('a password to rehash', h)).toBe(true)
  })

  test('dummyVerify does a real argon2 verify at the configured cost and is always false', async () => {
    const h = new PasswordHasher(params)
    const dummy = (h as unknown as { dummy: string }).dummy
    // A PHC string at the configured cost (so it costs what a user's hash costs), salt 16 and hash 32 bytes.
    expect(h.needsRehash(dummy)).toBe(false)
    const [, , , , salt, digest] = dummy.split('$')
    expect(Buffer.from(salt!, 'base64')).toHaveLength(16)
    expect(Buffer.from(digest!, 'base64')).toHaveLength(32)
    // argon2 reads it and computes (a string it could not read would throw, and verify would answer false at no cost).
    expect(await argonVerify(dummy, 'any password at all')).toBe(false)
    // Each dummyVerify goes through the hashing gate once, like the verify of a wrong password.
    const gate = (h as unknown as { gate: Gate }).gate
    const run = gate.run.bind(gate)
    // Each argon2 call must answer (false), not throw: verify would turn a throw into false at no cost.
    const answered: unknown[] = []
    gate.run = (fn) =>
      run(async () => {
        const r = await fn()
        answered.push(r)
        return r
      })
    expect(await h.dummyVerify('any password at all')).toBe(false)
    expect(await h.dummyVerify('')).toBe(false)
    expect(answered).toEqual([false, false])
    // Random per hasher: nothing precomputed can be shared between deployments.
    expect((new PasswordHasher(params) as unknown as { dummy: string }).dummy).not.toBe(dummy)
  })
})

describe('Gate (hashes at once)', () => {
  test('a caller arriving while a finished hash hands its slot over waits its turn (never two at once)', async () => {
    const gate = new Gate(1)
    let peak = 0
    let release!: () => void
    const first = gate.run(() => new Promise<void>((r) => (release = r)))
    const track = async () => {
      peak = Math.max(peak, gate.running)
      await new Promise((r) => setTimeout(r, 2))
    }
    const queued = gate.run(track)
    release()
    // Another request's promise chain reaches the gate in the same microtask run as the hand-over.
    const arriving = Promise.resolve().then(() => gate.run(track))
    await Promise.all([first, queued, arriving])
    expect(peak).toBe(1)
    expect(gate.running).toBe(0)
  })

  test('never runs more than its limit under a queue of callers that queue again', async () => {
    for (const limit of [1, 2]) {
      const gate = new Gate(limit)
      let peak = 0
      let done = 0
      const task = async () => {
        peak = Math.max(peak, gate.running)
        await new Promise((r) => setTimeout(r, 1))
        done++
      }
      const loop = async () => {
        for (let i = 0; i < 5; i++) await gate.run(task)
      }
      await Promise.all(Array.from({ length: 16 }, loop))
      expect(done).toBe(80)
      expect(peak).toBe(limit)
      expect(gate.running).toBe(0)
    }
  })

  test('a task that throws frees its slot for the next caller', async () => {
    const gate = new Gate(1)
    await expect(gate.run(async () => { throw new Error('boom') })).rejects.toThrow('boom')
    expect(await gate.run(async () => 7)).toBe(7)
    expect(gate.running).toBe(0)
  })
})
