/**
 * Engine-neutral transactions: `await withTransaction(db, async (tx) => { ... })`.
 *
 * On PostgreSQL this is drizzle's async transaction (its own pooled connection). On SQLite one bun:sqlite
 * connection is shared by every concurrent request, so an open `BEGIN` followed by an `await` would let other
 * requests' statements run inside the transaction (rolled back with it) and read its uncommitted rows. The
 * SQLite implementation prevents both:
 * - transactions run one at a time under an in-process async mutex (FIFO);
 * - the transaction's code runs in an AsyncLocalStorage context; every statement on the connection passes
 *   the connection's guard (installed by `openDatabase`). A statement from outside that context while the
 *   transaction is open first rolls the transaction back (nothing of it was acknowledged), then runs on its own
 *   (autocommit): it neither joins the transaction nor sees its uncommitted state;
 * - the interrupted transaction notices at its next statement or at commit, and its callback is run again
 *   from the start (like a PostgreSQL serialization failure), up to `MAX_ATTEMPTS` times, then fails as busy.
 * Callbacks must therefore do nothing but database work (no mail, no network, no events): everything else
 * happens after `withTransaction` returns. Kept free of real I/O awaits, they are never interrupted in practice.
 */
import type { Database, Statement } from 'bun:sqlite'
import { AsyncLocalStorage } from 'node:async_hooks'

/** How often an interrupted SQLite transaction is retried before it fails as busy. */
export const MAX_ATTEMPTS = 8

/** Thrown inside an interrupted SQLite transaction; `withTransaction` retries the callback. */
export class TransactionInterrupted extends Error {
  readonly code = 'SQLITE_BUSY'
  constructor() {
    super('database is locked (transaction interrupted by a concurrent statement)')
    this.name = 'TransactionInterrupted'
  }
}

interface Open {
  token: object
  aborted: boolean
}

/** Serialises SQLite transactions on one connection and keeps other statements out of them. */
export class TxGate {
  private readonly als = new AsyncLocalStorage<object>()
  private tail: Promise<void> = Promise.resolve()
  private open: Open | undefined
  /** How many transactions were interrupted (for tests and diagnostics). */
  interrupted = 0

  constructor(private readonly sqlite: Database) {}

  /** Called before every statement on the connection. */
  check(): void {
    const open = this.open
    if (!open) return
    const mine = this.als.getStore() === open.token
    if (mine) {
      if (open.aborted) throw new TransactionInterrupted()
      return
    }
    if (open.aborted) return
    // A statement from another request: end the transaction first (its work is retried), then let it run alone.
    open.aborted = true
    this.interrupted++
    if (this.sqlite.inTransaction) this.sqlite.run('ROLLBACK')
  }

  /** True inside a running transaction's callback. */
  inside(): boolean {
    return this.open !== undefined && this.als.getStore() === this.open.token
  }

  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.inside()) return await fn() // nested: part of the outer transaction
    const release = await this.lock()
    try {
      for (let attempt = 1; ; attempt++) {
        const open: Open = { token: {}, aborted: false }
        this.sqlite.run('BEGIN IMMEDIATE')
        this.open = open
        try {
          const result = await this.als.run(open.token, fn)
          if (open.aborted) throw new TransactionInterrupted()
          this.open = undefined
          this.sqlite.run('COMMIT')
          return result
        } catch (err) {
          this.open = undefined
          if (!open.aborted && this.sqlite.inTransaction) this.sqlite.run('ROLLBACK')
          if (!open.aborted || attempt >= MAX_ATTEMPTS) throw open.aborted ? new TransactionInterrupted() : err
        }
      }
    } finally {
      this.open = undefined
      release()
    }
  }

  private async lock(): Promise<() => void> {
    let release!: () => void
    const next = new Promise<void>((r) => (release = r))
    const prev = this.tail
    this.tail = prev.then(() => next)
    await prev
    return release
  }
}

const gates = new WeakMap<object, TxGate>()

/**
 * Puts a guard in front of every statement of `sqlite`, so transactions opened with `withTransaction` cannot
 * be joined by other requests. Returns the object to hand to drizzle (it prepares statements through it).
 */
export function guardConnection(sqlite: Database): { client: Database; gate: TxGate } {
  const gate = new TxGate(sqlite)
  const wrap = <S extends Statement<any, any>>(stmt: S): S => {
    const run = stmt.run.bind(stmt)
    const all = stmt.all.bind(stmt)
    const get = stmt.get.bind(stmt)
    const values = stmt.values.bind(stmt)
    return Object.assign(Object.create(stmt), {
      run: (...a: any[]) => (gate.check(), run(...a)),
      all: (...a: any[]) => (gate.check(), all(...a)),
      get: (...a: any[]) => (gate.check(), get(...a)),
      values: (...a: any[]) => (gate.check(), values(...a)),
    }) as S
  }
  const client = new Proxy(sqlite, {
    get(target, prop) {
      if (prop === 'prepare' || prop === 'query') return (sql: string, ...rest: any[]) => wrap((target as any)[prop](sql, ...rest))
      if (prop === 'run' || prop === 'exec')
        return (...a: any[]) => {
          gate.check()
          return (target as any)[prop](...a)
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
 * Runs `fn` in one transaction and returns its result; any throw rolls everything back. On SQLite `tx` is the
 * same connection (see the module comment for how concurrent requests are kept out).
 */
export function withTransaction<D extends object, T>(db: D, fn: (tx: D) => Promise<T> | T): Promise<T> {
  return gateOf(db).run(() => fn(db))
}
