/**
 * A thin wrapper over Bun's built-in RedisClient that never lets a slow or absent Redis stall a request:
 * every command (and the connect it may need) races a short timeout, the offline queue is off so a
 * disconnected client fails at once instead of queueing, and a closed connection is reopened on demand
 * (Bun does not reconnect by itself after giving up).
 */
import { RedisClient } from 'bun'

/** Rejects with `redis timeout` when `p` takes longer than `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what = 'redis'): Promise<T> {
  let timer: Timer | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timeout after ${ms}ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

export class Redis {
  readonly client: RedisClient
  private connecting: Promise<void> | undefined
  private closed = false

  constructor(
    url: string,
    readonly timeoutMs = 200,
  ) {
    this.client = new RedisClient(url, {
      connectionTimeout: Math.max(timeoutMs, 100),
      enableOfflineQueue: false,
      autoReconnect: false,
      maxRetries: 0,
    })
    // Without a handler Bun reports the closed connection as an unhandled error.
    this.client.onclose = () => {}
  }

  private ensureConnected(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('redis client closed'))
    if (this.client.connected) return Promise.resolve()
    this.connecting ??= this.client.connect().finally(() => {
      this.connecting = undefined
    })
    return this.connecting
  }

  /** Sends one command; rejects on error, on a lost connection, or after the timeout. */
  send(command: string, args: string[]): Promise<unknown> {
    return withTimeout(
      this.ensureConnected().then(() => this.client.send(command, args)),
      this.timeoutMs,
    )
  }

  /** Runs a Lua script by its SHA-1, loading it with EVAL the first time (or after a SCRIPT FLUSH). */
  async eval(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args]
    try {
      return await this.send('EVALSHA', [script.sha, ...tail])
    } catch (err) {
      if (!(err instanceof Error) || !/NOSCRIPT/i.test(err.message)) throw err
      return this.send('EVAL', [script.source, ...tail])
    }
  }

  close(): void {
    this.closed = true
    try {
      this.client.close()
    } catch {}
  }
}

export interface LuaScript {
  source: string
  sha: string
}

/** A Lua script with its SHA-1 precomputed for EVALSHA. */
export function luaScript(source: string): LuaScript {
  return { source, sha: new Bun.CryptoHasher('sha1').update(source).digest('hex') }
}
