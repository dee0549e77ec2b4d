import { gateOf, withTransaction } from '../../src/db/tx'
import { afterEach, describe, expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import { sql } from 'drizzle-orm'
import { asStoredJson, canonicalEventJson, canonicalJson, canonicalObject, chainHash, fieldsOfRow, GENESIS, rowOf, verifyChains, type AuditSource, type ChainedFields } from '../../src/modules/audit/chain'
import { AuditService } from '../../src/modules/audit/service'
import { Database } from 'bun:sqlite'
import { drizzle } from 'drizzle-orm/bun-sqlite'
import * as schema from '../../src/db/schema'
import { migrate, MIGRATIONS } from '../../src/db/migrate'
import { FakeClock } from '../../src/lib/clock'
import { createLogger } from '../../src/lib/logger'
import { expectProblem } from '../helpers'
import { makeAdminApp, seedUser } from '../support/admin'
import { onPg, sqlCount, sqlExec, sqlRows, sqlTx } from '../support/sql'

let t: Awaited<ReturnType<typeof makeAdminApp>>
afterEach(() => t?.close())

const ROWS = 'SELECT id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at FROM security_events ORDER BY id'
/** Every event as stored, oldest first: details as JSON text, numbers as numbers (PostgreSQL: jsonb read as text, int8 converted). */
const rows = async () => (await sqlRows<Record<string, unknown>>(t.deps, ROWS, [], ROWS.replace(' details,', ' details::text AS details,'))).map(rowOf)
/** What the walk reads: the app's own connection (SQLite) or pool (PostgreSQL). */
const source = (): AuditSource => t.deps.storage.sqlite ?? { pg: t.deps.storage.pg! }

/** Records `n` events of type e0, e1, … with a detail each. */
async function recordMany(n: number, audit = t.deps.audit) {
  for (let i = 0; i < n; i++) {
    await audit.record({ type: `e${i}`, outcome: 'info', actorId: null, details: { i, nested: { b: 2, a: [1, 'x'] } } }, { ip: '198.51.100.7', requestId: `req-${i}` })
    t.clock.advance(1000)
  }
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex')

describe('canonical form of an event (the hashed bytes)', () => {
  const base: ChainedFields = { chainId: 'c1', seq: 7, type: 'refresh', outcome: 'success', actorId: 'u1', targetId: 'u1', ip: '203.0.113.9', userAgent: 'UA "quoted" \u2028 é', requestId: 'r1', details: { sessionId: 's1' }, createdAt: 1767225600123 }
  const variants: ChainedFields[] = [
    base,
    { ...base, actorId: null, targetId: null, ip: null, userAgent: null, requestId: null, details: null },
    { ...base, details: { z: 1, a: [1, 'x', null, { b: true, a: -0 }], m: { y: 'é', x: 1.5e-7 } } },
    { ...base, seq: 1, type: 'ünïcode\u0001', outcome: 'failure', details: {} },
  ]
  test('the written-out form equals RFC 8785 over canonicalObject, for nulls, nesting, escapes and numbers', () => {
    for (const f of variants) expect(canonicalEventJson(f)).toBe(canonicalJson(canonicalObject(f)))
  })
  test('details are hashed as they read back from the JSON column', () => {
    const flat = { sessionId: 's', n: 3, ok: true, none: null }
    expect(asStoredJson(flat)).toBe(flat) // reads back as itself: used as it is
    for (const d of [{ a: undefined, b: 1 }, { at: new Date(0) }, { nested: { x: 1 } }, { big: Infinity }, Object.assign(Object.create({ inherited: 1 }), { own: 2 })] as Record<string, unknown>[]) {
      expect(asStoredJson(d)).toEqual(JSON.parse(JSON.stringify(d)))
      expect(canonicalJson(asStoredJson(d))).toBe(canonicalJson(JSON.parse(JSON.stringify(d))))
    }
  })
})

describe('hash chain', () => {
  test('each event links to the previous one; the hash is SHA-256 over prev_hash and the documented canonical JSON', async () => {
    t = await makeAdminApp()
    await t.deps.audit.record({ type: 'login', outcome: 'success', actorId: 'u1', targetId: 'u1', details: { z: 1, a: { y: 'é', b: null } } }, { ip: '203.0.113.5', userAgent: 'ua', requestId: 'rid-1' })
    t.clock.advance(5)
    await t.deps.audit.record({ type: 'logout', outcome: 'success' })
    const [a, b] = (await rows())
    expect(a!.chain_id).toBe(t.deps.audit.chainId)
    expect([a!.seq, b!.seq]).toEqual([1, 2])
    expect(a!.prev_hash).toBe(GENESIS)
    expect(b!.prev_hash).toBe(a!.hash)
    // The canonical form written out by hand, as the README documents it.
    const first = `{"actorId":"u1","chainId":"${a!.chain_id}","createdAt":"2026-01-01T00:00:00.000Z","details":{"a":{"b":null,"y":"é"},"z":1},"ip":"203.0.113.5","outcome":"success","requestId":"rid-1","seq":1,"targetId":"u1","type":"login","userAgent":"ua"}`
    expect(a!.hash).toBe(sha256(GENESIS + first))
    const second = `{"actorId":null,"chainId":"${a!.chain_id}","createdAt":"2026-01-01T00:00:00.005Z","details":null,"ip":null,"outcome":"success","requestId":null,"seq":2,"targetId":null,"type":"logout","userAgent":null}`
    expect(b!.hash).toBe(sha256(a!.hash! + second))
    const report = await t.deps.audit.verify()
    expect(report.intact).toBe(true)
    expect(report.firstBroken).toBeNull()
    expect(report.chains).toEqual([
      { chainId: a!.chain_id!, firstPosition: 1, pruned: false, headPosition: 2, headEventId: b!.id, headHash: b!.hash!, headCreatedAt: '2026-01-01T00:00:00.005Z', events: 2 },
    ])
  })

  test('canonical JSON follows RFC 8785 for keys, numbers and strings', () => {
    expect(canonicalJson({ b: [1, 2.5, -0, 1e21], a: 'line\n"q"', c: { '\u00e9': true, e: false }, d: undefined })).toBe('{"a":"line\\n\\"q\\"","b":[1,2.5,0,1e+21],"c":{"e":false,"é":true}}')
  })

  test('a changed detail is reported at exactly that event', async () => {
    t = await makeAdminApp()
    await recordMany(6)
    const target = (await rows())[3]!
    // PostgreSQL: the text cast to jsonb, so the stored value is the object the text names.
    await sqlExec(t.deps, 'UPDATE security_events SET details = ? WHERE id = ?', [JSON.stringify({ i: 99, nested: { b: 2, a: [1, 'x'] } }), target.id], 'UPDATE security_events SET details = $1::text::jsonb WHERE id = $2')
    for (const batchSize of [1000, 2]) {
      const r = await verifyChains(source(), { batchSize })
      expect(r.intact).toBe(false)
      expect(r.firstBroken).toMatchObject({ chainId: target.chain_id, eventId: target.id, position: 4, reason: 'hash_mismatch' })
    }
  })

  test('a changed event whose hash was recomputed breaks the next link', async () => {
    t = await makeAdminApp()
    await recordMany(5)
    const all = (await rows())
    const target = all[1]!
    await sqlExec(t.deps, 'UPDATE security_events SET hash = ? WHERE id = ?', ['f'.repeat(64), target.id])
    const r = await t.deps.audit.verify()
    // Its own hash no longer matches its fields: reported at the changed event, not later.
    expect(r.firstBroken).toMatchObject({ eventId: target.id, position: 2, reason: 'hash_mismatch' })
  })

  test('a deleted middle event is reported at the event after the gap', async () => {
    t = await makeAdminApp()
    await recordMany(6)
    const all = (await rows())
    await sqlExec(t.deps, 'DELETE FROM security_events WHERE id = ?', [all[2]!.id])
    const r = await verifyChains(source(), { batchSize: 2 })
    expect(r.firstBroken).toMatchObject({ chainId: all[3]!.chain_id, eventId: all[3]!.id, position: 4, reason: 'missing_events' })
    expect(r.firstBroken!.detail).toContain('position 3 is missing')
  })

  test('reordering is reported at the first displaced position (swapped positions, swapped ids)', async () => {
    t = await makeAdminApp()
    await recordMany(6)
    const all = (await rows())
    const [c, d] = [all[2]!, all[3]!]
    await sqlTx(t.deps, [
      ['UPDATE security_events SET seq = -1 WHERE id = ?', [c.id]],
      ['UPDATE security_events SET seq = 3 WHERE id = ?', [d.id]],
      ['UPDATE security_events SET seq = 4 WHERE id = ?', [c.id]],
    ])
    const bySeq = await t.deps.audit.verify()
    // Position 3 now holds the old position 4, whose prev_hash names position 3, not 2.
    expect(bySeq.firstBroken).toMatchObject({ eventId: d.id, position: 3, reason: 'prev_hash_mismatch' })

    await t.close()
    t = await makeAdminApp()
    await recordMany(6)
    const again = (await rows())
    const [e, f] = [again[2]!, again[3]!]
    await sqlTx(t.deps, [
      ['UPDATE security_events SET id = -1 WHERE id = ?', [e.id]],
      ['UPDATE security_events SET id = ? WHERE id = ?', [e.id, f.id]],
      ['UPDATE security_events SET id = ? WHERE id = -1', [f.id]],
    ])
    const byId = await t.deps.audit.verify()
    expect(byId.firstBroken).toMatchObject({ eventId: e.id, position: 4, reason: 'out_of_order' })
  })

  test('pruning the oldest events (by age or by id) is not tampering', async () => {
    t = await makeAdminApp()
    await recordMany(8)
    const all = (await rows())
    await sqlExec(t.deps, 'DELETE FROM security_events WHERE created_at < ?', [all[3]!.created_at])
    let r = await verifyChains(source(), { batchSize: 2 })
    expect(r.intact).toBe(true)
    expect(r.chains[0]).toMatchObject({ firstPosition: 4, pruned: true, headPosition: 8, events: 5 })
    await sqlExec(t.deps, 'DELETE FROM security_events WHERE id <= ?', [all[5]!.id])
    r = await t.deps.audit.verify()
    expect(r.intact).toBe(true)
    expect(r.chains[0]).toMatchObject({ firstPosition: 7, headHash: all[7]!.hash })
    // New events still chain onto the head after pruning.
    await recordMany(1)
    expect((await t.deps.audit.verify()).intact).toBe(true)
  })

  test('time never runs backwards within a chain, so pruning by age removes a prefix even after a clock step back', async () => {
    t = await makeAdminApp()
    await recordMany(3)
    t.clock.advance(-60_000)
    await recordMany(2)
    const all = (await rows())
    expect(all.map((r) => r.created_at)).toEqual([...all.map((r) => r.created_at)].sort((a, b) => a - b))
    await sqlExec(t.deps, 'DELETE FROM security_events WHERE created_at < ?', [all[3]!.created_at])
    expect((await t.deps.audit.verify()).intact).toBe(true)
  })

  test('events written before chaining began are counted but not checked; one stripped of its chain later is caught', async () => {
    t = await makeAdminApp()
    for (let i = 0; i < 3; i++) await sqlExec(t.deps, "INSERT INTO security_events (type, outcome, created_at) VALUES ('legacy', 'info', ?)", [i])
    expect((await t.deps.audit.verify())).toMatchObject({ intact: true, events: 0, unchainedEvents: 3, chains: [] })
    await recordMany(3)
    expect((await t.deps.audit.verify())).toMatchObject({ intact: true, events: 3, unchainedEvents: 3 })
    // Hiding the newest event by taking it out of the chain:
    const head = (await rows()).at(-1)!
    await sqlExec(t.deps, 'UPDATE security_events SET chain_id = NULL, seq = NULL WHERE id = ?', [head.id])
    const r = await t.deps.audit.verify()
    expect(r.firstBroken).toMatchObject({ chainId: null, eventId: head.id, position: null, reason: 'unchained_event' })
  })

  test('instances on one database keep separate chains; an event rolled back with its transaction leaves no broken link', async () => {
    t = await makeAdminApp()
    const other = new AuditService(t.deps)
    await recordMany(2)
    await recordMany(2, other)
    await recordMany(1)
    await withTransaction(t.deps.db, async () => {
      await t.deps.audit.record({ type: 'rolled_back', outcome: 'info' })
      throw new Error('abort')
    }).catch(() => {})
    await recordMany(1)
    await recordMany(1, other)
    const r = await t.deps.audit.verify()
    expect(r.intact).toBe(true)
    expect(r.chains.map((c) => c.events).sort()).toEqual([3, 4])
    expect((await rows()).some((x) => x.type === 'rolled_back')).toBe(false)
  })
})

describe('concurrent appends', () => {
  test('events recorded at once (alone, inside callers\' transactions, some rolled back) form one unbroken chain with every kept event', async () => {
    t = await makeAdminApp()
    const N = 60
    // On PostgreSQL these run on several pooled connections at once, each open transaction appending to a chain of
    // its own; a chain's next event must link to what the chain's previous transaction committed.
    await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        if (i % 3 === 0) return await t.deps.audit.record({ type: `alone${i}`, outcome: 'info', details: { i } })
        await withTransaction(t.deps.db, async (tx) => {
          const w = await t.deps.audit.recordInTx(tx, { type: `in_tx${i}`, outcome: 'info', details: { i } })
          if (i % 3 === 2) throw new Error('rolled back')
          return w
        })
          .then((w) => t.deps.audit.announce(w))
          .catch(() => {})
      }),
    )
    const kept = (await rows()).filter((r) => /^(alone|in_tx)\d+$/.test(String(r.type)))
    expect(kept.length).toBe(N - N / 3)
    expect(kept.some((r) => Number(String(r.type).replace(/\D/g, '')) % 3 === 2)).toBe(false)
    expect(t.logs.some((l) => l.msg === 'could not record security event')).toBe(false)
    const r = await t.deps.audit.verify()
    expect(r.intact).toBe(true)
    // One position per chain and event (on PostgreSQL the concurrent transactions append to chains of their own).
    const positions = kept.map((x) => `${x.chain_id}:${x.seq}`)
    expect(new Set(positions).size).toBe(positions.length)
    expect(new Set(kept.map((x) => x.chain_id)).size).toBe(r.chains.length)
  })

  test.skipIf(!onPg)('PostgreSQL: a transaction holding an event open does not hold up another transaction\'s event (each open transaction appends to a chain of its own)', async () => {
    t = await makeAdminApp()
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    let written!: () => void
    const inA = new Promise<void>((r) => (written = r))
    const a = withTransaction(t.deps.db, async (tx) => {
      const w = await t.deps.audit.recordInTx(tx, { type: 'held_open', outcome: 'info' })
      written()
      await held
      return w
    })
    await inA
    // With one chain for the process, B's event would wait on the chain's lock until A commits: B never finishes first.
    const b = withTransaction(t.deps.db, async (tx) => await t.deps.audit.recordInTx(tx, { type: 'alongside', outcome: 'info' }))
    const first = await Promise.race([b.then(() => 'b'), Bun.sleep(3000).then(() => 'timeout')])
    release()
    await Promise.all([a, b])
    expect(first).toBe('b')
    const kept = (await rows()).filter((r) => r.type === 'held_open' || r.type === 'alongside')
    expect(new Set(kept.map((r) => r.chain_id)).size).toBe(2)
    expect((await t.deps.audit.verify()).intact).toBe(true)
  })

  test.skipIf(!onPg)('PostgreSQL: a head in memory that the table no longer has (newer events lost: a restore, a failover) is read again, and the next event links to the table\'s head', async () => {
    t = await makeAdminApp()
    await recordMany(4)
    // The newest event of the chain disappears behind the process (as a restore of an older backup would do).
    const newest = (await rows()).filter((x) => /^e\d+$/.test(String(x.type))).at(-1)!
    await sqlExec(t.deps, 'DELETE FROM security_events WHERE id = ?', [newest.id], 'DELETE FROM security_events WHERE id = $1')
    await t.deps.audit.record({ type: 'after_loss', outcome: 'info' })
    const after = (await rows()).find((x) => x.type === 'after_loss')!
    // It takes the lost event's position, linked to the event before it: no gap, the trail verifies.
    expect(Number(after.seq)).toBe(Number(newest.seq))
    expect((await t.deps.audit.verify()).intact).toBe(true)
    expect(t.logs.some((l) => l.msg === 'audit chain head in memory not found in the table; read again')).toBe(true)
  })

  test('events written one after another keep to one chain, across transactions that rolled back', async () => {
    t = await makeAdminApp()
    await recordMany(3)
    await withTransaction(t.deps.db, async (tx) => {
      await t.deps.audit.recordInTx(tx, { type: 'undone', outcome: 'info' })
      throw new Error('rolled back')
    }).catch(() => {})
    await recordMany(2)
    await withTransaction(t.deps.db, async (tx) => {
      await t.deps.audit.recordInTx(tx, { type: 'two_a', outcome: 'info' })
      await t.deps.audit.recordInTx(tx, { type: 'two_b', outcome: 'info' })
    })
    const r = await t.deps.audit.verify()
    expect(r.intact).toBe(true)
    expect(r.chains.length).toBe(1)
    const mine = (await rows()).filter((x) => /^(e\d+|undone|two_a|two_b)$/.test(String(x.type)))
    expect(mine.map((x) => x.type)).not.toContain('undone')
    expect(mine.map((x) => Number(x.seq))).toEqual(mine.map((_, i) => Number(mine[0]!.seq) + i))
  })
})

describe('SQLite: the head kept in memory between events', () => {
  const io = () => Bun.sleep(5)
  test.skipIf(onPg)('after an interrupted group, a commit that failed and a transaction SQLite rolled back itself, the next events chain onto what was committed (SQLite only: group commit on one connection)', async () => {
    t = await makeAdminApp()
    const sqlite = t.deps.storage.sqlite!
    // A synchronous statement through the app's guarded connection, from outside any transaction.
    const gate = gateOf(t.deps.db) as unknown as { waiting: unknown; interrupted: number; undone: number }
    const outside = () => (t.deps.db as unknown as { run(q: unknown): unknown }).run(sql`UPDATE users SET name = name WHERE id = 'nobody'`)
    /** One more event, then the whole trail must verify: each step below is checked on its own. */
    const stillIntact = async () => {
      await recordMany(1)
      const r = await t.deps.audit.verify()
      expect(r.intact).toBe(true)
    }
    /** Records an event of `type` in a transaction that then runs `after`: 'committed', or the error's message. */
    const recordThen = (type: string, after: () => unknown) =>
      withTransaction(t.deps.db, async (tx) => {
        await t.deps.audit.recordInTx(tx, { type, outcome: 'info' })
        after()
      }).then(
        () => 'committed',
        (err: Error) => err.message,
      )
    await recordMany(2)
    // An interrupted group: both members are run again; the first attempt's events were rolled back.
    let started!: () => void
    const inside = new Promise<void>((r) => (started = r))
    const a = withTransaction(t.deps.db, async (tx) => t.deps.audit.announce(await t.deps.audit.recordInTx(tx, { type: 'member_a', outcome: 'info' })))
    const b = withTransaction(t.deps.db, async (tx) => {
      const w = await t.deps.audit.recordInTx(tx, { type: 'member_b', outcome: 'info' })
      started()
      await io()
      return w
    })
    await inside
    outside() // a statement from outside the open group
    await Promise.all([a, b])
    expect(gate.interrupted).toBe(1)
    await stillIntact()
    // A group interrupted while its commit waits a turn of the event loop (its member is done: nothing runs
    // the member again but the group's end).
    const c = withTransaction(t.deps.db, async (tx) => t.deps.audit.announce(await t.deps.audit.recordInTx(tx, { type: 'member_c', outcome: 'info' })))
    for (let i = 0; i < 100 && !gate.waiting; i++) await Promise.resolve()
    expect(gate.waiting).toBeDefined()
    outside()
    await c
    expect(gate.interrupted).toBe(2)
    await stillIntact()
    // A commit that fails (a deferred foreign key): the group's events are gone with it.
    sqlite.run('CREATE TABLE deferred_child (parent TEXT REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED)')
    const failed = await recordThen('lost_with_commit', () => sqlite.run("INSERT INTO deferred_child VALUES ('no-such-user')"))
    expect(failed).toContain('FOREIGN KEY')
    await stillIntact()
    // A transaction SQLite itself rolled back under a member that then returned normally (as it does on a full
    // disk or an I/O error): the group cannot commit, and the event is gone.
    const lost = await recordThen('lost_with_rollback', () => sqlite.run('ROLLBACK'))
    expect(lost).not.toBe('committed')
    await stillIntact()
    await recordMany(2)
    const types = (await rows()).map((r) => r.type)
    expect(types.filter((x) => String(x).startsWith('member_')).sort()).toEqual(['member_a', 'member_b', 'member_c'])
    expect(types).not.toContain('lost_with_commit')
    expect(types).not.toContain('lost_with_rollback')
    const r = await t.deps.audit.verify()
    expect(r.intact).toBe(true)
    expect(r.chains.map((c) => c.events)).toEqual([types.length])
  })
})

describe('a database from before hash chaining', () => {
  test.skipIf(onPg)('events written before the chain migration are left unchecked; chains start at the first hashed event (SQLite only: replays the SQLite migrations)', async () => {
    // Found by what it does, not by file name (migrations may be regenerated together).
    const chainMigration = MIGRATIONS.findIndex((m) => m.sql.some((q) => q.includes('`prev_hash`')))
    expect(chainMigration).toBeGreaterThan(0)
    const sqlite = new Database(':memory:', { strict: true })
    try {
      migrate(sqlite, MIGRATIONS.slice(0, chainMigration))
      for (let i = 0; i < 4; i++) {
        sqlite.run("INSERT INTO security_events (type, outcome, details, created_at) VALUES ('login', 'success', ?, ?)", [JSON.stringify({ i }), Date.UTC(2025, 0, 1) + i])
      }
      migrate(sqlite)
      expect(await verifyChains(sqlite)).toEqual({ intact: true, events: 0, unchainedEvents: 4, chains: [], firstBroken: null })
      const audit = new AuditService({ db: drizzle(sqlite, { schema }), storage: { sqlite }, clock: new FakeClock(), logger: createLogger('silent') })
      await audit.record({ type: 'login', outcome: 'success' })
      await audit.record({ type: 'logout', outcome: 'success' })
      const r = await verifyChains(sqlite)
      expect(r).toMatchObject({ intact: true, events: 2, unchainedEvents: 4 })
      expect(r.chains[0]).toMatchObject({ firstPosition: 1, headPosition: 2, pruned: false })
    } finally {
      await sqlite.close()
    }
  })
})

describe('chain heads stored elsewhere', () => {
  const fullRows = rows

  test('a chain rewritten with recomputed hashes passes alone but fails against a stored head', async () => {
    t = await makeAdminApp()
    await recordMany(5)
    const report = await t.deps.audit.verify()
    const stored = report.chains.map((c) => ({ chainId: c.chainId, position: c.headPosition, hash: c.headHash }))
    expect((await t.deps.audit.verify(stored)).intact).toBe(true)
    // What an attacker with write access does: change position 2 and recompute every later hash.
    let prev = (await fullRows())[0]!.hash!
    for (const r of (await fullRows()).slice(1)) {
      const details = r.seq === 2 ? JSON.stringify({ i: 1, nested: { b: 2, a: [1, 'rewritten'] } }) : r.details
      const hash = chainHash(prev, fieldsOfRow({ ...r, details })!)
      await sqlExec(t.deps, 'UPDATE security_events SET details = ?, prev_hash = ?, hash = ? WHERE id = ?', [details, prev, hash, r.id], 'UPDATE security_events SET details = $1::text::jsonb, prev_hash = $2, hash = $3 WHERE id = $4')
      prev = hash
    }
    expect((await t.deps.audit.verify()).intact).toBe(true)
    const r = await t.deps.audit.verify(stored)
    expect(r.firstBroken).toMatchObject({ chainId: stored[0]!.chainId, eventId: (await fullRows())[4]!.id, position: 5, reason: 'head_mismatch' })
  })

  test('deleting the newest events is caught by a stored head; pruning past it is not an alarm', async () => {
    t = await makeAdminApp()
    await recordMany(6)
    const mid = (await fullRows())[3]!
    const head = { chainId: mid.chain_id!, position: 4, hash: mid.hash! }
    await sqlExec(t.deps, 'DELETE FROM security_events WHERE id >= ?', [mid.id])
    expect((await t.deps.audit.verify()).intact).toBe(true)
    expect((await t.deps.audit.verify([head])).firstBroken).toMatchObject({ chainId: head.chainId, eventId: null, position: 4, reason: 'head_missing' })
    expect((await t.deps.audit.verify([{ ...head, chainId: '01a23105-0000-7000-8000-000000000000' }])).firstBroken!.reason).toBe('head_missing')

    await t.close()
    t = await makeAdminApp()
    await recordMany(6)
    const old = (await fullRows())[1]!
    await sqlExec(t.deps, 'DELETE FROM security_events WHERE id <= ?', [(await fullRows())[2]!.id])
    expect((await t.deps.audit.verify([{ chainId: old.chain_id!, position: 2, hash: old.hash! }])).intact).toBe(true)
  })

  test('the route takes heads as ?head=chain:position:hash,… and refuses malformed ones', async () => {
    t = await makeAdminApp()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    await recordMany(2)
    const r = await t.as(admin, 'GET', '/v1/audit/verify')
    const c = r.body.chains[0]
    const good = await t.as(admin, 'GET', `/v1/audit/verify?head=${c.chainId}:${c.headPosition}:${c.headHash}`)
    expect(good.body.intact).toBe(true)
    const wrong = await t.as(admin, 'GET', `/v1/audit/verify?head=${c.chainId}:${c.headPosition}:${'0'.repeat(64)}`)
    expect(wrong.body.firstBroken.reason).toBe('head_mismatch')
    expectProblem(await t.as(admin, 'GET', `/v1/audit/verify?head=${c.chainId}:x:${c.headHash}`), 422, 'validation_failed')
  })
})

describe('GET /v1/audit/verify', () => {
  test('needs audit:read; reports intact with the chain heads, then the first broken link', async () => {
    t = await makeAdminApp()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    const plain = await seedUser(t.deps)
    await recordMany(3)
    expectProblem(await t.as(undefined, 'GET', '/v1/audit/verify'), 401)
    expectProblem(await t.as(plain, 'GET', '/v1/audit/verify'), 403, 'forbidden')
    const ok = await t.as(admin, 'GET', '/v1/audit/verify')
    expect(ok.status).toBe(200)
    expect(ok.body.intact).toBe(true)
    expect(ok.body.chains[0].headHash).toMatch(/^[0-9a-f]{64}$/)
    const victim = (await rows())[1]!
    await sqlExec(t.deps, "UPDATE security_events SET type = 'e9' WHERE id = ?", [victim.id])
    const bad = await t.as(admin, 'GET', '/v1/audit/verify')
    expect(bad.status).toBe(200)
    expect(bad.body.intact).toBe(false)
    expect(bad.body.firstBroken).toMatchObject({ eventId: victim.id, position: victim.seq, reason: 'hash_mismatch' })
  })
})

/** 1,200 events recorded one transaction at a time: 2–3.5 s on PostgreSQL here, over bun's 5 s default on a loaded CI machine. */
const HEAVY_PG = 30_000

describe('GET /v1/audit/export', () => {
  const lines = (text: string) => text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l))

  test('streams NDJSON oldest first across batches, filtered by time and type, with hash fields that re-verify', async () => {
    t = await makeAdminApp()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    const plain = await seedUser(t.deps)
    const start = t.clock.now()
    for (let i = 0; i < 1200; i++) {
      await t.deps.audit.record({ type: i % 3 === 0 ? 'login_failed' : 'login', outcome: 'info', details: { i } })
      if (i % 100 === 99) t.clock.advance(60_000)
    }
    expectProblem(await t.as(plain, 'GET', '/v1/audit/export'), 403)
    expectProblem(await t.as(admin, 'GET', '/v1/audit/export?since=yesterday'), 422, 'validation_failed')
    expectProblem(await t.as(admin, 'GET', '/v1/audit/export?type=DROP%20TABLE'), 422)

    const stored = await sqlCount(t.deps, 'SELECT count(*) AS n FROM security_events')
    const all = await t.as(admin, 'GET', '/v1/audit/export', { headers: { 'accept-encoding': 'gzip' } })
    expect(all.status).toBe(200)
    expect(all.headers.get('content-type')).toStartWith('application/x-ndjson')
    expect(all.headers.get('content-encoding')).toBeNull()
    const events = lines(all.text)
    // The 1,200 recorded here plus the refusals above (403, 422s), each exactly once, in order.
    expect(stored).toBe(1203)
    expect(events.length).toBe(stored)
    expect(new Set(events.map((e) => e.id)).size).toBe(stored)
    for (let i = 1; i < events.length; i++) expect(events[i].id).toBeGreaterThan(events[i - 1].id)
    // Each line minus id, prevHash and hash is the canonical object its hash covers.
    let prev = GENESIS
    for (const e of events.filter((x) => x.chainId === t.deps.audit.chainId)) {
      const { id: _id, prevHash, hash, ...fields } = e
      expect(prevHash).toBe(prev)
      expect(hash).toBe(sha256(prevHash + canonicalJson(fields)))
      prev = hash
    }

    const since = new Date(start + 3 * 60_000).toISOString()
    const until = new Date(start + 5 * 60_000).toISOString()
    const window = lines((await t.as(admin, 'GET', `/v1/audit/export?since=${since}&until=${until}`)).text)
    expect(window.length).toBe(300)
    for (const e of window) expect(e.createdAt >= since && e.createdAt <= until).toBe(true)
    const failed = lines((await t.as(admin, 'GET', `/v1/audit/export?type=login_failed&since=${since}`)).text)
    expect(failed.length).toBe(300)
    expect(failed.every((e) => e.type === 'login_failed' && e.createdAt >= since)).toBe(true)
    expect(failed.map((e) => e.details.i)).toEqual([...failed.map((e) => e.details.i)].sort((a, b) => a - b))
  }, HEAVY_PG)

  test('the body is read one batch at a time: events recorded while it streams still arrive', async () => {
    t = await makeAdminApp()
    const admin = await seedUser(t.deps, { roles: ['admin'] })
    for (let i = 0; i < 1200; i++) await t.deps.audit.record({ type: 'login', outcome: 'info', details: { i } })
    const { session } = await t.deps.sessions.create({ userId: admin, transport: 'bearer', amr: ['pwd', 'otp'], meta: {} })
    const { token } = await t.deps.signer.sign(admin, session.id)
    const res = await t.handle(new Request('http://localhost/v1/audit/export?type=login', { headers: { authorization: `Bearer ${token}` } }))
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let text = ''
    const first = await reader.read()
    text += decoder.decode(first.value, { stream: true })
    // Only the first batch has been read from the table so far.
    expect(text.split('\n').filter(Boolean).length).toBe(500)
    t.clock.advance(1000)
    for (let i = 0; i < 10; i++) await t.deps.audit.record({ type: 'login', outcome: 'info', details: { late: i } })
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
    }
    const events = lines(text)
    expect(events.length).toBe(1210)
    expect(events.at(-1).details).toEqual({ late: 9 })
  }, HEAVY_PG)

  test.skipIf(onPg)('each batch is an index range scan in export order (no sort, no temporary table) (SQLite only: EXPLAIN QUERY PLAN)', async () => {
    t = await makeAdminApp()
    const plan = (q: string, ...p: (string | number)[]) =>
      t.deps.storage.sqlite!
        .query<{ detail: string }, (string | number)[]>(`EXPLAIN QUERY PLAN ${q}`)
        .all(...p)
        .map((r) => r.detail)
        .join(' | ')
    const cols = 'id, chain_id, seq, prev_hash, hash, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at'
    const all = plan(`SELECT ${cols} FROM security_events WHERE (created_at, id) > (?, ?) AND created_at <= ? ORDER BY created_at, id LIMIT ?`, 0, 0, 0, 1)
    expect(all).toContain('security_events_created')
    expect(all).not.toContain('TEMP B-TREE')
    const typed = plan(`SELECT ${cols} FROM security_events WHERE type = ? AND (created_at, id) > (?, ?) AND created_at <= ? ORDER BY type, created_at, id LIMIT ?`, 'x', 0, 0, 0, 1)
    expect(typed).toContain('security_events_type_created')
    expect(typed).not.toContain('TEMP B-TREE')
    const chain = plan(`SELECT ${cols} FROM security_events WHERE chain_id IS NOT NULL AND (chain_id, seq) > (?, ?) ORDER BY chain_id, seq LIMIT ?`, '', 0, 1)
    expect(chain).toContain('security_events_chain')
    expect(chain).not.toContain('TEMP B-TREE')
  })
})
