/**
 * JSON columns on PostgreSQL hold JSON values, not JSON strings: drizzle's own `jsonb` stringified the value and
 * Bun's client sent that string as a JSON string, so every object landed as a jsonb string. The schema's own
 * jsonb type passes the value through (src/db/pg/schema.ts), and migration 0004 repairs rows written before.
 * openPg + the PostgreSQL schema directly: openStore would switch this whole test process to PostgreSQL.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { openPg } from '../../src/db/pg/client'
import { migratePg, PG_MIGRATIONS } from '../../src/db/pg/migrate'
import * as pg from '../../src/db/pg/schema'
import { createTestDatabase, dropTestDatabase, PG_SKIP, PG_URL } from './pg-helpers'

const made: string[] = []
afterAll(async () => {
  for (const u of made) await dropTestDatabase(u)
}, 30_000)
const fresh = async () => {
  const u = await createTestDatabase()
  made.push(u)
  return u
}

describe.skipIf(!PG_URL)(`PostgreSQL JSON columns${PG_SKIP}`, () => {
  test('objects and arrays written through drizzle are stored as JSON values that SQL can read', async () => {
    const h = openPg({ url: await fresh(), poolSize: 1 })
    try {
      await migratePg(h.sql)
      await h.db.insert(pg.users).values({ id: 'u1', email: 'j@example.com', createdAt: 1, updatedAt: 1 })
      await h.db.insert(pg.securityEvents).values({ type: 'login', outcome: 'success', details: { route: '/v1/x', n: 2, nested: { a: [1, 'b'] } }, createdAt: 1 })
      await h.db.insert(pg.passkeys).values({ id: 'p1', credentialId: 'c1', userId: 'u1', name: 'key', publicKey: Buffer.from([1]), counter: 0, transports: ['usb', 'nfc'], createdAt: 1 })
      await h.db.insert(pg.challenges).values({ id: 'c1', kind: 'mfa_login', secretHash: 'h', data: { step: 'totp' }, createdAt: 1, expiresAt: 2 })
      expect(await h.sql`SELECT jsonb_typeof(details) AS t, details->>'route' AS route, details#>>'{nested,a,1}' AS b FROM security_events`).toEqual([{ t: 'object', route: '/v1/x', b: 'b' }])
      expect(await h.sql`SELECT jsonb_typeof(transports) AS t, transports->>1 AS second FROM passkeys`).toEqual([{ t: 'array', second: 'nfc' }])
      expect(await h.sql`SELECT jsonb_typeof(data) AS t, data->>'step' AS step FROM challenges`).toEqual([{ t: 'object', step: 'totp' }])
      // …and read back through drizzle as the values written.
      expect((await h.db.select().from(pg.securityEvents))[0]!.details).toEqual({ route: '/v1/x', n: 2, nested: { a: [1, 'b'] } })
      expect((await h.db.select().from(pg.passkeys))[0]!.transports).toEqual(['usb', 'nfc'])
    } finally {
      await h.close()
    }
  })

  test('migration 0004 turns JSON strings written before into the values they encode', async () => {
    const h = openPg({ url: await fresh(), poolSize: 1 })
    try {
      const repair = PG_MIGRATIONS.findIndex((m) => m.tag === '0004_jsonb_repair')
      expect(repair).toBeGreaterThan(0)
      await migratePg(h.sql, PG_MIGRATIONS.slice(0, repair))
      await h.sql`INSERT INTO users (id, email, created_at, updated_at) VALUES ('u1', 'j@example.com', 1, 1)`
      // What the old column type stored: the JSON text as a jsonb string.
      await h.sql`INSERT INTO security_events (type, outcome, details, created_at) VALUES ('login', 'success', to_jsonb(${'{"route":"/v1/x"}'}::text), 1), ('logout', 'success', NULL, 2)`
      await h.sql`INSERT INTO passkeys (id, credential_id, user_id, name, public_key, counter, transports, created_at) VALUES ('p1', 'c1', 'u1', 'key', '\\x01', 0, to_jsonb(${'["usb"]'}::text), 1)`
      await h.sql`INSERT INTO challenges (id, kind, secret_hash, data, created_at, expires_at) VALUES ('c1', 'mfa_login', 'h', to_jsonb(${'{"step":"totp"}'}::text), 1, 2)`
      expect((await h.sql`SELECT jsonb_typeof(details) AS t FROM security_events WHERE details IS NOT NULL`)[0].t).toBe('string')
      await migratePg(h.sql)
      expect(await h.sql`SELECT type, jsonb_typeof(details) AS t, details->>'route' AS route FROM security_events ORDER BY id`).toEqual([
        { type: 'login', t: 'object', route: '/v1/x' },
        { type: 'logout', t: null, route: null },
      ])
      expect(await h.sql`SELECT transports->>0 AS first FROM passkeys`).toEqual([{ first: 'usb' }])
      expect(await h.sql`SELECT data->>'step' AS step FROM challenges`).toEqual([{ step: 'totp' }])
    } finally {
      await h.close()
    }
  })
})
