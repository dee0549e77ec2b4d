/**
 * Engine-neutral transactions: `await withTransaction(db, async (tx) => { ... })`.
 *
 * On PostgreSQL this is drizzle's async transaction (its own pooled connection). On SQLite one bun:sqlite
 * connection is shared by every concurrent request, so an open `BEGIN` followed by an `await` would let other
 * requests' statements run inside the transaction (rolled back with it) and read its uncommitted rows. The
 * SQLite implementation prevents both:
 * - transactions run one at a time under an in-process async mutex (FIFO); consecutive ones may share one
 *   SQLite transaction and its commit, each inside its own savepoint (group commit, see TxGate);
 * - the transaction's code runs in an AsyncLocalStorage context; every statement on the connection passes
 *   the connection's guard (installed by `openDatabase`). A statement from outside that context while the
 *   transaction is open first rolls the transaction back (nothing of it was acknowledged), then runs on its own
 *   (autocommit): it neither joins the transaction nor sees its uncommitted state;
 * - the interrupted transaction notices at its next statement or at commit, and its callback is run again
 *   from the start (like a PostgreSQL serialization failure), up to `MAX_ATTEMPTS` times, then fails as busy.
 * - awaited drizzle queries from outside the transaction (every service query) do not interrupt it: they wait
 *   for their turn in the same FIFO, so they never see uncommitted rows and never force a retry. Only
 *   synchronous statements on the raw connection (health probe, storage probe) still interrupt.
 * Callbacks must therefore do nothing but database work (no mail, no network, no events): everything else
 * happens after `withTransaction` returns.
 *
 * On PostgreSQL the database handed to services (`routeToTransaction`) sends every query made inside a
 * `withTransaction` callback to that transaction's connection, whether the code uses `tx` or the service's own
 * `db`; nested calls join the outer transaction. Serialization failures and deadlocks (SQLSTATE 40001, 40P01)
 * run the callback again, up to `MAX_ATTEMPTS` times.
 */
import type { Database, Statement } from 'bun:sqlite'
import { sql } from 'drizzle-orm'
import { SQLiteDeleteBase, SQLiteDialect, SQLiteInsertBase, SQLiteSelectBase, SQLiteUpdateBase } from 'drizzle-orm/sqlite-core'
import { AsyncLocalStorage } from 'node:async_hooks'

/** How often an interrupted SQLite transaction is retried before it fails as busy. */
export const MAX_ATTEMPTS = 8

/** Compiled statements kept per connection (distinct SQL texts; the services issue a few hundred). */
const MAX_CACHED_STATEMENTS = 2000

/** Thrown inside an interrupted SQLite transaction; `withTransaction` retries the callback. */
export class TransactionInterrupted extends Error {
  readonly code = 'SQLITE_BUSY'
  constructor() {
    super('database is locked (transaction interrupted by a concurrent statement)')
    this.name = 'TransactionInterrupted'
  }
}

/** Most transactions that share one commit (see TxGate: consecutive waiting transactions). */
export const MAX_GROUP = 64
/**
 * A group takes no new member once its SQLite transaction has been open this long (ms): the write lock is
 * held meanwhile, and another process on the same file waits for it at most BULWARK_DB_BUSY_TIMEOUT (50 ms).
 */
export const MAX_GROUP_MS = 10

/** One SQLite transaction (`BEGIN IMMEDIATE` … `COMMIT`) and the transactions that share it. */
interface Group {
  /** Rolled back by a statement from outside: every member runs again. */
  aborted: boolean
  /** Rolled back by SQLite itself after a member's error (a full disk, an I/O error): the others fail with it. */
  lost?: unknown
  members: number
  /** Members whose work is in the transaction (the others failed and undid theirs). */
  kept: number
  /** The member count when the commit was last put off by one turn of the event loop. */
  waitedAt?: number
  /** When its SQLite transaction began (performance.now()). */
  began: number
  /** Settles when the group's COMMIT has run (or failed, or the group was interrupted). */
  committed: Promise<void>
  settle(err?: unknown): void
}

/** "Inside this transaction": the open transaction's token (SQLite gates) or `{ db, tx }` (PostgreSQL routers). */
const sqliteTxContext = new AsyncLocalStorage<object>()
const pgTxContext = new AsyncLocalStorage<PgScope>()

/** One attempt of a PostgreSQL `withTransaction` callback: its pool database, its transaction, what runs at its end. */
interface PgScope {
  db: object
  tx: object
  ends: ((committed: boolean) => void)[]
}

/**
 * PostgreSQL: the scope of the `withTransaction` transaction running now (one object per attempt, shared by
 * nested calls that join it), for per-transaction state kept in a WeakMap; undefined outside one and on SQLite.
 */
export function transactionScope(): object | undefined {
  return pgTxContext.getStore()
}

/**
 * PostgreSQL: runs `fn` once the transaction running now has ended, with whether it committed (every attempt of a
 * retried callback ends on its own), before `withTransaction` settles. False, and nothing registered, outside one.
 * `fn` must not throw (what it throws is dropped).
 */
export function whenTransactionEnds(fn: (committed: boolean) => void): boolean {
  const scope = pgTxContext.getStore()
  if (!scope) return false
  scope.ends.push(fn)
  return true
}

/**
 * Runs `fn` outside any transaction's context. Work started from inside a transaction's callback inherits its
 * async context, so a background round kicked off there (the mail and webhook workers' nudge) would route its
 * queries into that transaction, long closed by the time they run (on PostgreSQL every one failed).
 */
export function detached<T>(fn: () => T): T {
  return sqliteTxContext.exit(() => pgTxContext.exit(fn))
}

interface Open {
  token: object
  group: Group
}

function newGroup(): Group {
  let resolve!: () => void
  let reject!: (e: unknown) => void
  const committed = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)))
  committed.catch(() => {}) // a group whose members all failed is awaited by nobody
  return { aborted: false, members: 0, kept: 0, began: performance.now(), committed, settle: (err) => (err === undefined ? resolve() : reject(err)) }
}

/**
 * Serialises SQLite transactions on one connection and keeps other statements out of them.
 *
 * Group commit: when a transaction finishes and the next in line is a transaction too, the SQLite transaction
 * stays open for it (each member runs inside its own SAVEPOINT, so a member that fails undoes only its own
 * work), up to MAX_GROUP members; the last one commits for all. A member's `run` returns only once that commit
 * has succeeded. A statement in line (an awaited query from outside any transaction) ends the group first, so
 * it never sees uncommitted rows. When nobody is in line, the commit waits one turn of the event loop for
 * transactions of requests already being read. Consecutive transactions then cost one commit: on a busy
 * server most pages a transaction writes (the right-most leaves of time- and id-ordered indexes, interior
 * pages) are shared, and the write-ahead log gets each of them once per group instead of once per
 * transaction (bench: 49 -> 12 write calls per refresh at 64 connections). Durability is unchanged: a
 * transaction is acknowledged only after the COMMIT that carries it.
 */
export class TxGate {
  private readonly als = sqliteTxContext
  /** Who waits for the gate, in order, and whether each is a transaction. */
  private readonly queue: { tx: boolean; go: () => void }[] = []
  /** A statement or a transaction holds the gate. */
  private held = false
  /** The SQLite transaction open now, shared by consecutive members. */
  private group: Group | undefined
  /** The member running now. */
  private open: Open | undefined
  /** How many transactions were interrupted (for tests and diagnostics). */
  interrupted = 0
  /** How many SQLite transactions committed, and how many members they carried (for tests and diagnostics). */
  commits = 0
  committedMembers = 0
  /**
   * How many times work on this connection was undone: a member rolled back to its savepoint, a group ended
   * without its commit. A value a transaction derived from rows it wrote (the audit chain's head) stays true
   * while this count is unchanged.
   */
  undone = 0
  /** Called after every COMMIT that succeeded (the background checkpointer listens, src/db/checkpointer.ts). */
  onCommit: () => void = () => {}

  constructor(private readonly sqlite: Database) {}

  /** Called before every statement on the connection. */
  check(): void {
    const open = this.open
    const group = this.group
    if (!group) return
    const mine = open !== undefined && this.als.getStore() === open.token
    if (mine) {
      if (group.aborted) throw new TransactionInterrupted()
      return
    }
    if (group.aborted) return
    // A statement from another request: end the transaction first (its work is retried), then let it run alone.
    group.aborted = true
    this.interrupted++
    if (this.sqlite.inTransaction) this.sqlite.run('ROLLBACK')
  }

  /** Whether an awaited statement from outside a transaction must queue (a transaction is open or waiting). */
  mustWait(): boolean {
    return (this.held || this.queue.length > 0) && !this.inside()
  }

  /** Runs one statement (synchronously, when its turn comes) in FIFO order with the transactions. */
  async statement<T>(run: () => T): Promise<T> {
    await this.acquire(false)
    try {
      return run()
    } finally {
      this.release()
    }
  }

  /** True inside a running transaction's callback. */
  inside(): boolean {
    return this.open !== undefined && this.als.getStore() === this.open.token
  }

  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.inside()) return await fn() // nested: part of the outer transaction
    await this.acquire(true)
    for (let attempt = 1; ; attempt++) {
      // Our turn: continue the open group, or begin one.
      let group = this.group
      if (!group) {
        try {
          this.sqlite.run('BEGIN IMMEDIATE')
        } catch (err) {
          this.release()
          throw err
        }
        group = this.group = newGroup()
      }
      group.members++
      const open: Open = { token: {}, group }
      let ok = false
      let result: T | undefined
      let failure: unknown
      try {
        this.sqlite.run('SAVEPOINT bulwark_tx')
        this.open = open
        result = await this.als.run(open.token, fn)
        if (group.aborted) throw new TransactionInterrupted()
        this.sqlite.run('RELEASE bulwark_tx')
        ok = true
      } catch (err) {
        failure = err
        this.undone++
        // Undo this member's work only; the others in the group keep theirs.
        if (!group.aborted && this.sqlite.inTransaction) {
          this.sqlite.run('ROLLBACK TO bulwark_tx')
          this.sqlite.run('RELEASE bulwark_tx')
        } else if (!group.aborted) group.lost ??= err
      } finally {
        this.open = undefined
      }
      if (ok) group.kept++
      this.handOver(group)
      try {
        // A member that failed has nothing in the group, but it too returns only once the group has settled.
        await group.committed
        if (!ok) throw failure
        return result as T
      } catch (err) {
        if (!group.aborted) throw ok ? err : failure
        if (attempt >= MAX_ATTEMPTS) throw new TransactionInterrupted()
        await this.acquire(true)
      }
    }
  }

  /** After a member: the next transaction in line continues the group; otherwise the group commits (or, interrupted, ends). */
  private handOver(group: Group): void {
    let committed = false
    let inTransaction = false
    try {
      inTransaction = this.sqlite.inTransaction
    } catch (err) {
      group.lost ??= err // the connection was closed
    }
    const usable = !group.aborted && group.lost === undefined && inTransaction
    if (usable && group.members < MAX_GROUP && performance.now() - group.began < MAX_GROUP_MS) {
      if (this.queue[0]?.tx) return this.release()
      // Nobody in line yet: put the commit off by one turn of the event loop, once per member, so requests that
      // are already being read can join (a lone transaction loses a turn, no CPU). Anything queued meanwhile
      // decides at the next turn: a transaction continues the group, a statement makes it commit first.
      if (this.queue.length === 0 && group.kept > 0 && group.waitedAt !== group.members) {
        group.waitedAt = group.members
        this.waiting = group
        setImmediate(() => {
          if (this.waiting === group) this.finishWaiting()
        })
        return
      }
    }
    this.group = undefined
    if (group.aborted || !usable) this.undone++
    if (group.aborted) group.settle(new TransactionInterrupted())
    else if (!usable) group.settle(group.lost ?? new Error('the SQLite transaction ended before its commit'))
    else {
      try {
        this.sqlite.run('COMMIT')
        this.commits++
        this.committedMembers += group.members
        committed = true
        group.settle()
      } catch (err) {
        this.undone++
        try {
          if (this.sqlite.inTransaction) this.sqlite.run('ROLLBACK')
        } catch {}
        group.settle(err)
      }
    }
    this.release()
    if (committed) {
      try {
        this.onCommit() // outside the commit's try: a listener that throws does not fail a group that committed
      } catch {}
    }
  }

  /** The group whose commit was put off by a turn of the event loop, if any. */
  private waiting: Group | undefined

  private finishWaiting(): void {
    const group = this.waiting
    this.waiting = undefined
    if (group) this.handOver(group)
  }

  /** Commits now a group whose commit was put off (before the connection closes). */
  flush(): void {
    const group = this.waiting
    if (group) group.waitedAt = group.members
    this.finishWaiting()
  }

  private acquire(tx: boolean): Promise<void> {
    if (!this.held && this.queue.length === 0) {
      this.held = true
      return Promise.resolve()
    }
    return new Promise<void>((go) => this.queue.push({ tx, go }))
  }

  /** Passes the gate to the next in line (it stays held), or frees it. */
  private release(): void {
    const next = this.queue.shift()
    if (next) next.go()
    else this.held = false
  }
}

const gates = new WeakMap<object, TxGate>()

/**
 * Which request wrote: the busy retry (src/plugins/storage-retry.ts) runs each attempt in a context of its
 * own, and every statement of a guarded connection that can change rows marks that context when it ran.
 * A request refused by another process's lock is run again only when its own context is unmarked; other
 * requests' writes meanwhile do not count (the connection's total_changes() would).
 */
export const writeTracker = new AsyncLocalStorage<{ wrote: boolean }>()
const WRITE_SQL = /^\s*(insert|update|delete|replace|with\b[\s\S]*\b(insert|update|delete)\b)/i
const markWrote = () => {
  const s = writeTracker.getStore()
  if (s) s.wrote = true
}

/**
 * Awaited drizzle queries on a guarded SQLite connection queue behind an open transaction instead of
 * interrupting it. drizzle's builders run their statement synchronously inside `then` (`execute()` calls
 * `all()`/`run()`), so the hook is `then` itself: when the connection's gate says a transaction is open or
 * waiting, the statement takes its turn in the gate's FIFO. The builders hold their session as `session`, the
 * session its client as `client` (drizzle-orm 0.45; test/db/tx.test.ts fails if that changes).
 */
for (const C of [SQLiteSelectBase, SQLiteInsertBase, SQLiteUpdateBase, SQLiteDeleteBase] as unknown as { prototype: any }[]) {
  const proto = C.prototype
  const original = proto.then as (this: any, f?: any, r?: any) => Promise<unknown>
  if ((original as { queued?: boolean }).queued) continue
  const queued = function (this: { session?: { client?: object } }, f?: any, r?: any) {
    const client = this.session?.client
    const gate = client ? gates.get(client) : undefined
    if (gate?.mustWait()) return gate.statement(() => original.call(this)).then(f, r)
    return original.call(this, f, r)
  }
  ;(queued as { queued?: boolean }).queued = true
  proto.then = queued
}

/**
 * SQLite: `.limit(1)` is written into the statement (` limit 1`) instead of bound as a parameter. Since SQLite
 * 3.47 the query planner reads a bound LIMIT's value, and binding that parameter again marks the prepared
 * statement expired, so every execution of a cached or prepared statement with `limit ?` was compiled again:
 * 13.5 against 4.6 µs for the same primary-key lookup (bun:sqlite, SQLite 3.53, one slow core; README,
 * Performance, Round 5). Only 1, the limit of every point lookup: a page size chosen by the caller stays a
 * parameter, since each literal is a statement text of its own and the statement cache keeps only the first
 * MAX_CACHED_STATEMENTS texts (the users page, the hot list, prepares one statement per size with
 * `literalLimit`). Anything else keeps drizzle's own form. PostgreSQL builds its queries with its own dialect.
 */
{
  const proto = SQLiteDialect.prototype as unknown as { buildLimit(limit: unknown): unknown; literalLimit?: boolean }
  if (!proto.literalLimit) {
    const original = proto.buildLimit
    proto.buildLimit = function (this: unknown, limit: unknown) {
      if (limit === 1) return sql.raw(' limit 1')
      return original.call(this, limit)
    }
    proto.literalLimit = true
  }
}

/** A LIMIT written into the SQL (`.limit(literalLimit(n))`), for a statement prepared once per size: a safe non-negative integer only. */
export function literalLimit(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError('literalLimit takes a non-negative integer')
  // drizzle's SQLite dialect writes an SQL object after ` limit ` as it is (buildLimit); the type says number.
  return sql.raw(String(n)) as unknown as number
}

/**
 * Puts a guard in front of every statement of `sqlite`, so transactions opened with `withTransaction` cannot
 * be joined by other requests. Returns the object to hand to drizzle (it prepares statements through it).
 */
export function guardConnection(sqlite: Database): { client: Database; gate: TxGate } {
  const gate = new TxGate(sqlite)
  const statements = new Map<string, Statement<any, any>>()
  const wrap = <S extends Statement<any, any>>(stmt: S, sql: string): S => {
    const run = stmt.run.bind(stmt)
    const all = stmt.all.bind(stmt)
    const get = stmt.get.bind(stmt)
    const values = stmt.values.bind(stmt)
    if (WRITE_SQL.test(sql)) {
      // Marked after the statement ran: a statement refused (busy) changed nothing.
      const marked =
        <F extends (...a: any[]) => any>(f: F) =>
        (...a: any[]) => {
          gate.check()
          const r = f(...a)
          markWrote()
          return r
        }
      return Object.assign(Object.create(stmt), { run: marked(run), all: marked(all), get: marked(get), values: marked(values) }) as S
    }
    return Object.assign(Object.create(stmt), {
      run: (...a: any[]) => (gate.check(), run(...a)),
      all: (...a: any[]) => (gate.check(), all(...a)),
      get: (...a: any[]) => (gate.check(), get(...a)),
      values: (...a: any[]) => (gate.check(), values(...a)),
    }) as S
  }
  const client = new Proxy(sqlite, {
    get(target, prop) {
      // drizzle prepares every non-prepared query again: compiled statements (bun:sqlite `query`) and their
      // guards are kept per SQL text, bounded, so the hot path neither recompiles nor rewraps.
      if (prop === 'prepare' || prop === 'query')
        return (sql: string, ...rest: any[]) => {
          if (rest.length) return wrap((target as any)[prop](sql, ...rest), sql)
          let w = statements.get(sql)
          if (!w) {
            w = wrap(target.query(sql), sql)
            if (statements.size < MAX_CACHED_STATEMENTS) statements.set(sql, w)
          }
          return w
        }
      if (prop === 'run' || prop === 'exec')
        return (...a: any[]) => {
          gate.check()
          const r = (target as any)[prop](...a)
          if (typeof a[0] !== 'string' || WRITE_SQL.test(a[0])) markWrote()
          return r
        }
      const v = Reflect.get(target, prop, target)
      return typeof v === 'function' ? v.bind(target) : v
    },
  })
  gates.set(sqlite, gate)
  gates.set(client, gate)
  return { client, gate }
}

/** Registers the gate of a drizzle database built on a guarded connection. */
export function registerGate(db: object, gate: TxGate): void {
  gates.set(db, gate)
}

/** The gate of a database (created on first use for a connection opened elsewhere, without the guard). */
export function gateOf(db: object, sqlite?: Database): TxGate {
  let g = gates.get(db)
  if (!g) {
    const raw = sqlite ?? ((db as { $client?: Database }).$client as Database)
    g = gates.get(raw) ?? new TxGate(raw)
    gates.set(db, g)
  }
  return g
}

/**
 * SQLite, inside a transaction of `db`'s gate: the connection's undo count (`TxGate.undone`); undefined
 * elsewhere (PostgreSQL, or outside a transaction), where nothing derived from uncommitted rows may be kept.
 */
export function undoCount(db: object): number | undefined {
  if (pgRouters.has(db)) return undefined
  const g = gates.get(db)
  return g?.inside() ? g.undone : undefined
}

/**
 * Runs `fn` in one transaction and returns its result; any throw rolls everything back. On SQLite `tx` is the
 * same connection (see the module comment for how concurrent requests are kept out).
 */
export function withTransaction<D extends object, T>(db: D, fn: (tx: D) => Promise<T> | T): Promise<T> {
  const routed = pgRouters.get(db)
  if (routed) return routed(fn as (tx: object) => Promise<T> | T)
  return gateOf(db).run(() => fn(db))
}

type PgRun = <T>(fn: (tx: object) => Promise<T> | T) => Promise<T>
const pgRouters = new WeakMap<object, PgRun>()
/** The pool database behind each routing proxy (for statements prepared once per pool). */
const pgBases = new WeakMap<object, object>()

const pgRetryable = (err: unknown): boolean => {
  for (let e: any = err, d = 0; e && d < 5; e = e.cause, d++) {
    const code = String(e.errno ?? e.code ?? '')
    if (code === '40001' || code === '40P01') return true
  }
  return false
}

/**
 * True for an error that reruns a whole `withTransaction` callback (an interrupted SQLite transaction; a
 * PostgreSQL serialization failure or deadlock): code that catches errors inside a callback must rethrow these.
 */
export const isRetryable = (err: unknown): boolean => err instanceof TransactionInterrupted || pgRetryable(err)

/**
 * Wraps a PostgreSQL drizzle database so that, inside a `withTransaction` callback, every query runs on the
 * transaction's connection (the callback may use `tx` or the service's own `db`), and nested calls join it.
 */
export function routeToTransaction<D extends object>(db: D & { transaction: (fn: (tx: any) => Promise<any>) => Promise<any> }): D {
  const als = pgTxContext
  const mine = () => {
    const s = als.getStore()
    return s?.db === db ? s.tx : undefined
  }
  const proxy = new Proxy(db, {
    get(target, prop) {
      const tx = mine()
      const on = (tx ?? target) as any
      const v = on[prop]
      return typeof v === 'function' ? v.bind(on) : v
    },
  }) as D
  const run: PgRun = async (fn) => {
    if (mine()) return await fn(proxy)
    for (let attempt = 1; ; attempt++) {
      const ends: ((committed: boolean) => void)[] = []
      let committed = false
      try {
        const result = await db.transaction(async (tx: object) => als.run({ db, tx, ends }, () => fn(proxy)))
        committed = true
        return result
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS || !pgRetryable(err)) throw err
      } finally {
        for (const end of ends) {
          try {
            end(committed)
          } catch {
            // whenTransactionEnds: a hook that throws is dropped, the transaction's outcome stands.
          }
        }
      }
    }
  }
  pgRouters.set(proxy, run)
  pgBases.set(proxy, db)
  return proxy
}

/**
 * Serialises writers of one logical resource (the owner role's members, an audit chain) until the end of the
 * current transaction, across every instance: `pg_advisory_xact_lock` on PostgreSQL
 * (https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS); on SQLite the
 * transaction already holds the only write lock (`BEGIN IMMEDIATE`).
 */
export async function lockResource(tx: object, name: string): Promise<void> {
  if (!pgRouters.has(tx)) return
  await (tx as { execute: (q: unknown) => Promise<unknown> }).execute(sql`SELECT pg_advisory_xact_lock(hashtext(${name}))`)
}

/**
 * PostgreSQL: the client of the `withTransaction` callback running now on the pool database `base` (null when
 * that transaction has no client drizzle exposes), or undefined outside one.
 */
function pgTxClient(base: object): unknown {
  const store = pgTxContext.getStore()
  if (store?.db !== base) return undefined
  return (store.tx as { session?: { client?: unknown } }).session?.client ?? null
}

/**
 * PostgreSQL only: runs SQL text on the connection of the caller's transaction (`tx`, as `withTransaction`
 * hands it), or on the pool outside one, through Bun's SQL client directly (no query building). With
 * `params` it is one parameterised statement (the extended protocol; Bun prepares and caches it per
 * connection); without, the text may hold several statements separated by `;` sent as ONE simple query (one
 * round trip; https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-MULTI-STATEMENT), and
 * the result is one row array per statement. Nothing user-supplied may be spliced into parameterless text.
 */
export async function pgRaw(db: object, text: string, params?: unknown[]): Promise<any[]> {
  const base = pgBases.get(db)
  if (!base) throw new Error('pgRaw is PostgreSQL only')
  const tx = pgTxClient(base)
  const on = (tx === undefined ? (base as { $client?: unknown }).$client : tx) as { unsafe(text: string, params?: unknown[]): Promise<any[]> & { execute(): unknown } } | undefined
  if (!on) throw new Error('pgRaw: no PostgreSQL connection')
  const query = params ? on.unsafe(text, params) : on.unsafe(text)
  // Started now, in call order. A Bun query starts when first awaited, and `await` calls its `then` a microtask
  // later (it is a thenable subclass of Promise): a statement started with `execute()` meanwhile (the audit
  // event's savepoint, pgStartPrepared) would go out first, ahead of the statement the caller issued before it.
  query.execute()
  return await query
}

/** The template objects of `pgStartPrepared`, one per text (Bun's client caches a statement per text and connection). */
const preparedTexts = new Map<string, TemplateStringsArray>()

/**
 * PostgreSQL only: starts one parameterless statement `text` on the connection of the caller's transaction (`tx`,
 * as `withTransaction` hands it), as a prepared statement (the extended protocol), and returns its result. Bun's
 * client sends prepared statements issued without waiting in one write and reads their answers in one round trip
 * (seen with strace: three Bind/Execute/Sync in one `sendto`), but sends a simple query (`pgRaw` without
 * params) alone and waits for it; so what is issued right after this call travels with it. Each distinct text is
 * prepared and kept per connection: only for a small fixed set of texts written in the code. It starts at once,
 * as `pgRaw` does: a query built by drizzle and not yet awaited starts only a microtask after its `await`, so it
 * goes out after this one even when it was issued before.
 */
export function pgStartPrepared(db: object, text: string): Promise<unknown> {
  const base = pgBases.get(db)
  if (!base) throw new Error('pgStartPrepared is PostgreSQL only')
  const client = pgTxClient(base) as ((strings: TemplateStringsArray) => { execute(): Promise<unknown> }) | null | undefined
  if (typeof client !== 'function') throw new Error('pgStartPrepared: not inside a transaction')
  let strings = preparedTexts.get(text)
  if (!strings) {
    // A template object as the tag of a literal would see it: frozen, with a non-enumerable `raw`.
    strings = Object.freeze(Object.defineProperty([text], 'raw', { value: Object.freeze([text]) })) as unknown as TemplateStringsArray
    preparedTexts.set(text, strings)
  }
  return client(strings).execute()
}

interface Prepared<R> {
  all(params?: Record<string, unknown>): R[]
  execute(params?: Record<string, unknown>): unknown
}

/**
 * Runs a prepared drizzle query (`.prepare()`, built once) on either engine: on SQLite its synchronous `all`,
 * queued behind an open transaction like any awaited query; on PostgreSQL its `execute`.
 */
export async function allPrepared<R>(db: object, stmt: Prepared<R>, params: Record<string, unknown> = {}): Promise<R[]> {
  if (pgRouters.has(db)) return (await stmt.execute(params)) as R[]
  const gate = gates.get(db)
  if (gate?.mustWait()) return await gate.statement(() => stmt.all(params))
  return stmt.all(params)
}

/**
 * SQLite only: the rows of a prepared drizzle query as arrays in selection order (bun:sqlite `values`, without
 * drizzle's per-row mapping into objects), queued behind an open transaction like any awaited query. For
 * hot lists whose columns need no decoding (text, integers).
 */
export async function valuesPrepared(db: object, stmt: { values(params?: Record<string, unknown>): unknown[][] }, params: Record<string, unknown> = {}): Promise<unknown[][]> {
  if (pgRouters.has(db)) throw new Error('valuesPrepared is SQLite only')
  const gate = gates.get(db)
  if (gate?.mustWait()) return await gate.statement(() => stmt.values(params))
  return stmt.values(params)
}

/** The parts of a drizzle query builder `preparedQuery` uses: awaitable, and preparable on SQLite. */
interface Buildable<R> extends PromiseLike<R> {
  prepare(): { all(params?: Record<string, unknown>): unknown; run(params?: Record<string, unknown>): unknown }
}

/**
 * A hot-path query written once for both engines. `build(db, p)` makes the drizzle query, taking each
 * variable value as `p('name')`:
 * - on SQLite it is built once per connection with `p = sql.placeholder` and prepared (drizzle would build
 *   and compile the SQL of an unprepared query again on every call); each call runs it with `params`, queued
 *   behind an open transaction like any awaited query, or inside the caller's transaction (on SQLite the
 *   transaction handle is the connection's database itself);
 * - on PostgreSQL it is built once per pool with placeholders too (drizzle's `.prepare()`: the SQL text, the
 *   parameter slots and the result mapping), and each call runs that prepared query on the connection of the
 *   caller's transaction when there is one (a copy of it with the transaction's client: drizzle binds a
 *   prepared query to the client it was made on), else on the pool. Building the query was most of the
 *   server's CPU of a refresh on PostgreSQL (profile: drizzle's buildQueryFromSourceParams and sqlToQuery).
 * `all` returns the rows (a select, or a write with `returning`); `run` a write's driver result (for
 * `dialect.changes`).
 */
let preparedSeq = 0

export function preparedQuery<P extends Record<string, unknown>, R>(build: (db: any, p: (name: keyof P & string) => any) => Buildable<R>) {
  const compiled = new WeakMap<object, ReturnType<Buildable<R>['prepare']>>()
  const stmt = (db: object) => {
    let s = compiled.get(db)
    if (!s) {
      s = build(db, (name) => sql.placeholder(name)).prepare()
      compiled.set(db, s)
    }
    return s
  }
  const exec = async <T>(db: object, params: P, run: (s: ReturnType<Buildable<R>['prepare']>) => T): Promise<T> => {
    const s = stmt(db)
    const gate = gates.get(db)
    if (gate?.mustWait()) return await gate.statement(() => run(s))
    return run(s)
  }
  const pgPrepared = new WeakMap<object, { execute(params: Record<string, unknown>): Promise<unknown> }>()
  const pgExec = async (db: object, params: P): Promise<unknown> => {
    const base = pgBases.get(db)
    if (!base) return await build(db, (name) => params[name])
    let q = pgPrepared.get(base)
    if (!q) {
      q = (build(base, (name) => sql.placeholder(name)) as unknown as { prepare(name: string): { execute(params: Record<string, unknown>): Promise<unknown> } }).prepare(`bw_prepared_${++preparedSeq}`)
      pgPrepared.set(base, q)
    }
    const client = pgTxClient(base)
    if (client === null) return await build(db, (name) => params[name])
    if (client !== undefined) return await (Object.assign(Object.create(q), { client }) as typeof q).execute(params)
    return await q.execute(params)
  }
  return {
    async all(db: object, params: P): Promise<R> {
      if (pgRouters.has(db)) return (await pgExec(db, params)) as R
      return (await exec(db, params, (s) => s.all(params))) as R
    },
    async run(db: object, params: P): Promise<unknown> {
      if (pgRouters.has(db)) return await pgExec(db, params)
      return await exec(db, params, (s) => s.run(params))
    },
  }
}
