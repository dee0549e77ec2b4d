/**
 * `bulwark secret rotate`: moves the data from the master secret in BULWARK_OLD_SECRET to the one in
 * BULWARK_SECRET (see src/modules/keys/secret.ts for what that touches). Every instance should be stopped
 * first; afterwards they start with the new BULWARK_SECRET and everything keeps working: sessions, TOTP,
 * recovery codes, signing keys (the JWKS does not change).
 */
import { buildDeps } from '../app'
import type { Command } from './command'
import { ConfigError, loadConfig, secretProblems, type Config } from '../config'
import { openDatabase, openStore } from '../db/client'
import { probeSecret, rotateSecret, SECRET_MISMATCH_EXIT, SecretMismatchError, secretOpens } from '../modules/keys/secret'

const SECRET_DETAILS = `Re-encrypts everything encrypted under the master secret (signing keys, TOTP secrets, pending refresh
successors) from the old secret to the new one, in one transaction. Token hashes (refresh tokens, mailed
tokens, recovery codes) stay valid: their hashing key is kept, encrypted under the new secret.

Environment:
  BULWARK_OLD_SECRET (or BULWARK_OLD_SECRET_FILE)  the secret the data is under now
  BULWARK_SECRET     (or BULWARK_SECRET_FILE)      the new secret (at least 32 random bytes)
  plus the usual BULWARK_DATA_DIR / BULWARK_DB_PATH, or BULWARK_DATABASE_URL, naming the database.

Steps: stop every instance, run this command, start the instances with the new BULWARK_SECRET
(and without BULWARK_OLD_SECRET). Running it again after success changes nothing.

Exit codes: 0 done (or already done), 1 no database, 2 bad configuration, ${SECRET_MISMATCH_EXIT} BULWARK_OLD_SECRET does not
open the database, 64 usage.
`

const err = (line: string) => process.stderr.write(`bulwark: ${line}\n`)

export const secretRotateCommand: Command = {
  name: 'secret rotate',
  summary: 're-encrypt the data from BULWARK_OLD_SECRET to BULWARK_SECRET (stop every instance first)',
  details: SECRET_DETAILS,
  run: async () => await rotateMasterSecret(),
}

/** Runs `bulwark secret rotate`; returns the exit code. */
async function rotateMasterSecret(): Promise<number> {
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    err('configuration is not valid:')
    for (const p of e.problems) err(`  - ${p}`)
    return 2
  }
  const { secret: next, oldSecret: old } = config
  if (!old) return (err('BULWARK_OLD_SECRET (or BULWARK_OLD_SECRET_FILE) must hold the current secret'), 2)
  if (!next) return (err('BULWARK_SECRET (or BULWARK_SECRET_FILE) must hold the new secret'), 2)
  const weak = secretProblems(next)
  if (weak.length) return (err(`the new secret: ${weak[0]}`), 2)
  if (old === next) return (err('BULWARK_SECRET and BULWARK_OLD_SECRET are the same; nothing to rotate'), 2)

  let r
  if (config.pg) {
    // PostgreSQL (BULWARK_DATABASE_URL): the same checks and the same one-transaction rotation, on the pool.
    const store = await openStore(config)
    try {
      const opens = await secretOpens(store.db, old)
      if (opens === undefined) return (err('the PostgreSQL database has no signing keys yet; nothing to rotate'), 1)
      if (opens === false) {
        if ((await secretOpens(store.db, next)) === true) {
          process.stdout.write('the database already uses the new secret; nothing to do\n')
          return 0
        }
        err(new SecretMismatchError('BULWARK_OLD_SECRET').message)
        return SECRET_MISMATCH_EXIT
      }
      r = await rotateSecret(store.db, old, next, Date.now())
    } finally {
      await store.close()
    }
  } else {
    const oldState = await probeSecret(config.dbPath, old)
    if (oldState === 'empty') return (err(`no readable database with signing keys at ${config.dbPath}; nothing to rotate`), 1)
    if (oldState === 'refused') {
      if (await probeSecret(config.dbPath, next) === 'opens') {
        process.stdout.write('the database already uses the new secret; nothing to do\n')
        return 0
      }
      err(new SecretMismatchError('BULWARK_OLD_SECRET').message)
      return SECRET_MISMATCH_EXIT
    }
    const handle = openDatabase(config.dbPath)
    try {
      r = await rotateSecret(handle.db, old, next, Date.now())
    } finally {
      handle.close()
    }
  }
  // Opening with the new secret now works: record the event through the normal services.
  const deps = await buildDeps(config)
  try {
    await deps.audit.record({ type: 'secret_rotated', outcome: 'success', details: { reencrypted: r.reencrypted, skipped: r.skipped } }, { userAgent: 'bulwark-cli' })
  } finally {
    deps.close()
  }
  const done = Object.entries(r.reencrypted).map(([t, n]) => `${n} ${t}`).join(', ') || 'nothing'
  process.stdout.write(`re-encrypted under the new secret: ${done}; token hashes kept. Start every instance with the new BULWARK_SECRET.\n`)
  const skipped = Object.entries(r.skipped)
  if (skipped.length) process.stdout.write(`left as they were (not readable with the old secret either): ${skipped.map(([t, n]) => `${n} ${t}`).join(', ')}\n`)
  return 0
}
