/**
 * A private redis-server on a free loopback port, for tests that must stop and restart Redis (the shared
 * one on 6379 is never restarted). No persistence: a restart starts empty, like a crashed cache.
 */
import type { Subprocess } from 'bun'
import { RedisClient } from 'bun'

/** A port that was free a moment ago (bound on port 0, then released). */
export function freePort(): number {
  const s = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = s.port
  s.stop(true)
  return port
}

export class OwnRedis {
  readonly port = freePort()
  readonly url = `redis://127.0.0.1:${this.port}`
  private proc: Subprocess | undefined

  static available(): boolean {
    return Bun.which('redis-server') !== null
  }

  /** Starts the server and waits until it answers PING. */
  async start(): Promise<void> {
    this.proc = Bun.spawn(['redis-server', '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdout: 'ignore', stderr: 'ignore' })
    const end = Date.now() + 5000
    while (Date.now() < end) {
      const c = new RedisClient(this.url, { autoReconnect: false, maxRetries: 0, connectionTimeout: 200 })
      c.onclose = () => {}
      try {
        await c.connect()
        if ((await c.send('PING', [])) === 'PONG') return
      } catch {
      } finally {
        await c.close()
      }
      await Bun.sleep(20)
    }
    throw new Error(`redis-server on port ${this.port} did not start`)
  }

  /** Kills the server and waits for the process to end. */
  async stop(): Promise<void> {
    const p = this.proc
    this.proc = undefined
    if (!p) return
    p.kill('SIGKILL')
    await p.exited
  }
}
