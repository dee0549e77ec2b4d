/**
 * The master secret and the database: refusing a secret that does not open the database, the keys that
 * stay the same across a secret rotation, and the rotation itself (`bulwark secret rotate`).
 *
 * What depends on BULWARK_SECRET (src/lib/crypto.ts `deriveKeys`):
 * - the encryption key: signing keys' private halves, TOTP secrets, refresh-token successors. A rotation
 *   re-encrypts all of them (and webhook signing secrets) under the new secret, in one transaction (ENCRYPTED below lists them).
 * - the token-hashing, CSRF and cursor keys. A keyed hash cannot be recomputed without the token, so a
 *   rotation keeps these keys (those of the first secret), stored AES-GCM encrypted under the new one in
 *   `secret_keys`: refresh tokens, mailed tokens, recovery codes, CSRF tokens and cursors keep working.
 */
import { withTransaction } from '../../db/tx'
import { Database } from 'bun:sqlite'
import { and, asc, desc, eq, isNotNull, isNull, sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/bun-sqlite'
import { existsSync } from 'node:fs'
import type { Db } from '../../db/client'
import * as schema from '../../db/schema'
import { dialect, refreshTokens, secretKeys, signingKeys, totpFactors, webhookEndpoints } from '../../db/tables'
import { decrypt, deriveKey, deriveKeys, encrypt, type Keys } from '../../lib/crypto'

/** Exit code of a start refused because BULWARK_SECRET does not open the database. */
export const SECRET_MISMATCH_EXIT = 4

export class SecretMismatchError extends Error {
  constructor(what = 'BULWARK_SECRET') {
    super(
      `${what} does not match this database (its current signing key cannot be decrypted with it); ` +
        'start with the secret the data was written under, or change it with `bulwark secret rotate`',
    )
    this.name = 'SecretMismatchError'
  }
}

/** The derived keys kept across rotations, by the purpose name stored in `secret_keys`. */
const STABLE = [
  ['token-hash', 'tokenHash'],
  ['csrf', 'csrf'],
  ['cursor', 'cursor'],
] as const satisfies readonly (readonly [string, keyof Keys])[]

const stableAad = (purpose: string) => `secret-key:${purpose}`

/**
 * Every column encrypted under the derived encryption key, with the AAD its writer binds it to. A secret
 * rotation re-encrypts exactly these; test/modules/keys-secret.test.ts fails when an `encrypt(` call
 * appears in a file not listed here.
 */
export const ENCRYPTED_IN = ['src/modules/keys/service.ts', 'src/modules/mfa/totp-service.ts', 'src/modules/sessions/service.ts', 'src/modules/webhooks/service.ts'] as const

/** Whether `secret` decrypts the current signing key; undefined when there is none yet. */
/** Whether `secret` decrypts the current signing key of `db`; undefined when it has none yet. */
export async function secretOpens(db: Db, secret: string): Promise<boolean | undefined> {
  const enc = deriveKey(secret, 'encryption')
  const key = (await db
    .select({ kid: signingKeys.kid, box: signingKeys.privateJwkEnc })
    .from(signingKeys)
    .where(isNull(signingKeys.rotatedAt))
    .orderBy(desc(signingKeys.createdAt), desc(dialect.rowOrder))
    .limit(1)
    )[0]
  if (!key) return undefined
  try {
    decrypt(enc, key.box, `jwk:${key.kid}`)
    return true
  } catch {
    return false
  }
}

/**
 * Whether `secret` opens the database file: `opens`, `refused`, or `empty` (no file, or no signing key yet).
 * Reads the file read-only, so it runs before anything opens it for writing (no migration, no new key).
 */
export async function probeSecret(dbPath: string, secret: string): Promise<'opens' | 'refused' | 'empty'> {
  if (dbPath === ':memory:' || !existsSync(dbPath)) return 'empty'
  let sqlite: Database
  try {
    sqlite = new Database(dbPath, { readonly: true })
  } catch {
    return 'empty' // unreadable read-only (e.g. a WAL needing recovery): effectiveKeys checks again once it is open
  }
  try {
    const has = sqlite.query<{ n: number }, []>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'signing_keys'").get()
    if (!has?.n) return 'empty'
    const r = await secretOpens(drizzle(sqlite, { schema }), secret)
    return r === undefined ? 'empty' : r ? 'opens' : 'refused'
  } catch {
    return 'empty'
  } finally {
    sqlite.close()
  }
}

/** Refuses (SecretMismatchError) a secret that cannot decrypt the database's current signing key; a wrong secret changes nothing. */
export async function assertSecretOpens(dbPath: string, secret: string, what = 'BULWARK_SECRET'): Promise<void> {
  if (await probeSecret(dbPath, secret) === 'refused') throw new SecretMismatchError(what)
}

/** The keys in force: derived from the secret, with the kept ones (after a rotation) from `secret_keys`. */
export async function effectiveKeys(db: Db, secret: string): Promise<Keys> {
  if (await secretOpens(db, secret) === false) throw new SecretMismatchError()
  const keys = deriveKeys(secret)
  const rows = await db.select().from(secretKeys)
  for (const [purpose, field] of STABLE) {
    const row = rows.find((r) => r.purpose === purpose)
    if (!row) continue
    try {
      keys[field] = Buffer.from(decrypt(keys.encryption, row.keyEnc, stableAad(purpose)), 'base64')
    } catch {
      throw new SecretMismatchError()
    }
  }
  return keys
}

export interface SecretRotation {
  /** Rows re-encrypted per table. */
  reencrypted: Record<string, number>
  /** Rows the old secret could not decrypt either (written under yet another secret); left as they were. */
  skipped: Record<string, number>
}

/**
 * Re-encrypts everything under the new secret and keeps the hashing keys, in one IMMEDIATE transaction:
 * either all of it is done or nothing is. The caller has checked that the old secret opens the database.
 */
export async function rotateSecret(db: Db, oldSecret: string, newSecret: string, now: number): Promise<SecretRotation> {
  return await withTransaction(db, async (tx) => {
      const old = await effectiveKeys(tx as unknown as Db, oldSecret)
      const next = deriveKey(newSecret, 'encryption')
      const reencrypted: Record<string, number> = {}
      const skipped: Record<string, number> = {}
      const redo = async (table: string, box: string, aad: string, write: (v: string) => Promise<unknown>) => {
        let plain: string
        try {
          plain = decrypt(old.encryption, box, aad)
        } catch {
          skipped[table] = (skipped[table] ?? 0) + 1
          return
        }
        await write(encrypt(next, plain, aad))
        reencrypted[table] = (reencrypted[table] ?? 0) + 1
      }
      for (const r of await tx.select({ kid: signingKeys.kid, box: signingKeys.privateJwkEnc }).from(signingKeys).orderBy(asc(signingKeys.kid))) {
        await redo('signing_keys', r.box, `jwk:${r.kid}`, (v) => tx.update(signingKeys).set({ privateJwkEnc: v }).where(eq(signingKeys.kid, r.kid)))
      }
      for (const r of await tx.select({ userId: totpFactors.userId, box: totpFactors.secretEnc }).from(totpFactors)) {
        await redo('totp_factors', r.box, `totp:${r.userId}`, (v) => tx.update(totpFactors).set({ secretEnc: v }).where(eq(totpFactors.userId, r.userId)))
      }
      for (const r of await tx.select({ id: refreshTokens.id, box: refreshTokens.successorEnc }).from(refreshTokens).where(isNotNull(refreshTokens.successorEnc))) {
        await redo('refresh_tokens', r.box!, `rt:${r.id}`, (v) => tx.update(refreshTokens).set({ successorEnc: v }).where(and(eq(refreshTokens.id, r.id))))
      }
      for (const r of await tx.select({ id: webhookEndpoints.id, box: webhookEndpoints.secretEnc, prev: webhookEndpoints.previousSecretEnc }).from(webhookEndpoints)) {
        await redo('webhook_endpoints', r.box, `whsec:${r.id}`, (v) => tx.update(webhookEndpoints).set({ secretEnc: v }).where(eq(webhookEndpoints.id, r.id)))
        if (r.prev) await redo('webhook_endpoints', r.prev, `whsec-prev:${r.id}`, (v) => tx.update(webhookEndpoints).set({ previousSecretEnc: v }).where(eq(webhookEndpoints.id, r.id)))
      }
      for (const [purpose, field] of STABLE) {
        const keyEnc = encrypt(next, old[field].toString('base64'), stableAad(purpose))
        await tx.insert(secretKeys).values({ purpose, keyEnc, createdAt: now }).onConflictDoUpdate({ target: secretKeys.purpose, set: { keyEnc, createdAt: now } })
      }
      return { reencrypted, skipped }
    })
}
