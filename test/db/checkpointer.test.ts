/**
 * The background checkpointer (src/db/checkpointer.ts): a real worker thread with its own connection to a real
 * SQLite file. Polls for what the worker reports (ordering, not durations).
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'drizzle-orm'
import { openStore, type Store } from '../../src/db/client'
import { AUTO_CHECKPOINT_PAGES, Checkpointer } from '../../src/db/checkpointer'
import { withTransaction } from '../../src/db/tx'
import { checkpointOutcome, databaseCheck } from '../../src/modules/health/service'

let dir: string
let store: Store | undefined
afterEach(async () => {
  await store?.close()
  store = undefined
  rmSync(dir, { recursive: true, force: true })
})

const fresh = async (checkpointWorker: boolean, checkpointTiming?: { idleMs: number }) => {
  dir = mkdtempSync(join(tmpdir(), 'bulwark-checkpoint-'))
  store = await openStore({ dbPath: join(dir, 'db.sqlite') }, { checkpointWorker, checkpointTiming })
  store.sqlite!.run('CREATE TABLE blobs (b BLOB)')
  return store
}
const autoPages = (s: Store) => s.sqlite!.query<{ wal_autocheckpoint: number }, []>('PRAGMA wal_autocheckpoint').get()!.wal_autocheckpoint
/** About `pages` 4 KiB pages of rows, in one transaction through the server's gate. */
const write = (s: Store, pages: number) =>
  withTransaction(s.db, async (tx) => {
    for (let i = 0; i < pages; i++) (tx as unknown as { run(q: unknown): unknown }).run(sql`INSERT INTO blobs VALUES (randomblob(4000))`)
  })
async function until(what: () => boolean, label: string) {
  for (let i = 0; i < 500 && !what(); i++) await Bun.sleep(10)
  if (!what()) throw new Error(`never happened: ${label}`)
}

describe('SQLite checkpoints in a worker thread', () => {
  test('the connection does no automatic checkpoint; commits are checkpointed by the worker, all frames copied, and the log starts over', async () => {
    const s = await fresh(true, { idleMs: 600_000 }) // only the commits it is told of make it checkpoint here
    const cp = s.checkpointer!
    expect(cp.state).toBe('background')
    expect(autoPages(s)).toBe(0)
    for (let i = 0; i < 6; i++) await write(s, 500) // 3,000 pages: three automatic checkpoints' worth
    await until(() => (cp.last?.log ?? 0) > 0 && cp.last!.checkpointed === cp.last!.log, 'a checkpoint that copied the whole log')
    expect(checkpointOutcome(cp)).toBeUndefined()
    // Everything was copied, so the next write starts the log over from its beginning: it stays the size it was.
    const walSize = statSync(join(dir, 'db.sqlite-wal')).size
    const before = cp.checkpoints
    for (let i = 0; i < 3; i++) await write(s, 500)
    await until(() => cp.checkpoints > before && cp.last!.checkpointed === cp.last!.log, 'the next checkpoint')
    expect(statSync(join(dir, 'db.sqlite-wal')).size).toBeLessThanOrEqual(walSize)
  })

  test('commits in quick succession share notices, and the last commit is still checkpointed (its notice is sent when the worker answers)', async () => {
    const s = await fresh(true, { idleMs: 600_000 }) // only notices make it checkpoint here
    const cp = s.checkpointer!
    const commits = 60
    for (let i = 0; i < commits; i++) {
      await write(s, 1)
      if (i % 20 === 19) await Bun.sleep(250) // a checkpoint runs between the bursts
    }
    expect(cp.notices).toBeGreaterThan(0)
    expect(cp.notices).toBeLessThan(commits)
    // The database file alone (no log) holds every row once the last commits were checkpointed.
    const alone = join(dir, 'alone')
    mkdirSync(alone)
    const rowsInFile = () => {
      copyFileSync(join(dir, 'db.sqlite'), join(alone, 'copy.sqlite'))
      const db = new Database(join(alone, 'copy.sqlite'), { readonly: true })
      try {
        return db.query<{ n: number }, []>('SELECT count(*) AS n FROM blobs').get()!.n
      } finally {
        db.close()
      }
    }
    await until(() => rowsInFile() === commits, 'every commit in the database file')
  })

  test('one notice is outstanding at most; a commit reported meanwhile gets its own notice once the worker answers', async () => {
    const s = await fresh(true, { idleMs: 600_000 })
    const cp = s.checkpointer!
    for (let i = 0; i < 10; i++) cp.committed()
    expect(cp.notices).toBe(1)
    await until(() => cp.checkpoints >= 1, 'the first checkpoint')
    // The nine reported while the first notice was outstanding are owed one more checkpoint, which starts after them.
    expect(cp.notices).toBe(2)
    await until(() => cp.checkpoints >= 2, 'the owed checkpoint')
    await Bun.sleep(300)
    expect(cp.notices).toBe(2) // nothing was reported since: no further notice
    expect(cp.checkpoints).toBe(2)
  })

  test('a write outside the server\'s transactions is checkpointed too (the worker\'s own interval)', async () => {
    const s = await fresh(true, { idleMs: 100 })
    const cp = s.checkpointer!
    s.sqlite!.run('INSERT INTO blobs VALUES (randomblob(4000))') // not through the gate: no commit is reported
    await until(() => (cp.last?.log ?? 0) > 0 && cp.last!.checkpointed === cp.last!.log, 'a checkpoint on the interval')
  })

  test('after a clean close the database file alone holds every committed row (the log is copied in and cut to nothing)', async () => {
    const s = await fresh(true)
    await write(s, 200) // closed at once: before the worker's next checkpoint
    await s.close()
    store = undefined
    const wal = join(dir, 'db.sqlite-wal')
    expect(existsSync(wal) ? statSync(wal).size : 0).toBe(0)
    const alone = join(dir, 'alone')
    mkdirSync(alone)
    copyFileSync(join(dir, 'db.sqlite'), join(alone, 'db.sqlite'))
    const copy = new Database(join(alone, 'db.sqlite'), { readonly: true })
    expect(copy.query<{ n: number }, []>('SELECT count(*) AS n FROM blobs').get()!.n).toBe(200)
    copy.close()
  })

  test('a worker that cannot open the database leaves the connection on SQLite\'s automatic checkpoint, and readiness (the database check) says so', async () => {
    const s = await fresh(false)
    expect(s.checkpointer).toBeUndefined()
    expect(autoPages(s)).toBe(AUTO_CHECKPOINT_PAGES)
    const reasons: string[] = []
    const cp = new Checkpointer(s.sqlite!, dir /* a folder, not a database */, (r) => reasons.push(r))
    expect(await cp.start()).toBe(false)
    expect(cp.state).toBe('inline')
    expect(autoPages(s)).toBe(AUTO_CHECKPOINT_PAGES)
    expect(reasons.length).toBe(1)
    expect(checkpointOutcome(cp)).toMatchObject({ status: 'degraded', detail: expect.stringMatching(/^checkpoints run inline in commits/) })
    await cp.stop()
  })

  test('a worker that fails while running hands checkpoints back to the connection (automatic again), and readiness (the database check) says so', async () => {
    const failures: string[] = []
    dir = mkdtempSync(join(tmpdir(), 'bulwark-checkpoint-'))
    store = await openStore({ dbPath: join(dir, 'db.sqlite') }, { checkpointWorker: true, onCheckpointFailure: (r) => failures.push(r) })
    const cp = store.checkpointer!
    expect(autoPages(store)).toBe(0)
    // Its connection lost to something it cannot open: the worker reports the error it would on a real failure.
    ;(cp as unknown as { worker: Worker }).worker.postMessage({ open: dir })
    await until(() => cp.state === 'inline', 'the worker given up')
    expect(failures.length).toBe(1)
    expect(autoPages(store)).toBe(AUTO_CHECKPOINT_PAGES)
    expect(await databaseCheck(store).run()).toMatchObject({ status: 'degraded', detail: expect.stringMatching(/^checkpoints run inline in commits/) })
  })

  test('a worker thread that ends without an error (terminated) hands checkpoints back to the connection too', async () => {
    const s = await fresh(true, { idleMs: 600_000 })
    const cp = s.checkpointer!
    ;(cp as unknown as { worker: Worker }).worker.terminate()
    await until(() => cp.state === 'inline', 'the worker given up')
    expect(autoPages(s)).toBe(AUTO_CHECKPOINT_PAGES)
    expect(cp.lastError).toBe('the checkpoint worker exited')
  })

  test('a checkpoint that failed for lack of space makes the database check down until one succeeds', async () => {
    const s = await fresh(true, { idleMs: 600_000 })
    const cp = s.checkpointer!
    const check = databaseCheck(s)
    expect(await check.run()).toBeUndefined()
    cp.lastFailure = { code: 'SQLITE_FULL', errno: 13 } // as the worker reports a failed checkpoint on a full disk
    cp.lastError = 'database or disk is full'
    expect(await check.run()).toMatchObject({ status: 'down', detail: expect.stringContaining('[SQLITE_FULL]') })
    cp.lastFailure = undefined // another kind of failure (not a storage error): degraded only
    expect(await check.run()).toMatchObject({ status: 'degraded', detail: expect.stringMatching(/^the last background checkpoint failed/) })
    cp.lastFailure = { code: 'SQLITE_FULL', errno: 13 }
    await write(s, 10) // the next checkpoint succeeds and clears it
    await until(() => cp.lastFailure === undefined, 'a successful checkpoint')
    expect(await check.run()).toBeUndefined()
  })

  test('an in-memory database gets no worker', async () => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-checkpoint-'))
    store = await openStore({ dbPath: ':memory:' }, { checkpointWorker: true })
    expect(store.checkpointer).toBeUndefined()
  })
})
