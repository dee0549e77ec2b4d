/**
 * A small clamd client speaking the INSTREAM command (clamd(8)): `zINSTREAM\0`, then the bytes in chunks
 * each prefixed by a 4-byte big-endian length, then a zero length; clamd answers `stream: OK` or
 * `stream: <signature> FOUND`. Works over TCP (`host:port`) or a unix socket (a path). Every call has a
 * deadline, so a hung scanner cannot hold a request forever.
 *
 * Two deadlines: a scan first asks `PING` and needs `PONG` within the short `connectMs` (a clamd that
 * accepts connections but never answers is found out in about a second, not after the whole scan
 * deadline); only then is the file streamed, under the longer `scanMs`. A missed deadline is a
 * `ClamdTimeout`, which the caller's circuit breaker treats as reason to open at once.
 */

export type ScanResult = { clean: true } | { clean: false; signature: string }

export class ClamdError extends Error {}

/** clamd did not answer within a deadline (hung or overloaded), as opposed to refusing the connection. */
export class ClamdTimeout extends ClamdError {}

export interface ClamdTimeouts {
  /** Connect and answer PING (ms). */
  connectMs: number
  /** The whole INSTREAM exchange (ms). */
  scanMs: number
}

const CHUNK = 64 * 1024

export class ClamdClient {
  private readonly target: { unix: string } | { hostname: string; port: number }

  private readonly timeouts: ClamdTimeouts

  constructor(address: string, timeouts: Partial<ClamdTimeouts> = {}) {
    this.timeouts = { connectMs: timeouts.connectMs ?? 1000, scanMs: timeouts.scanMs ?? 10_000 }
    if (address.startsWith('/')) this.target = { unix: address }
    else {
      const i = address.lastIndexOf(':')
      const port = Number(address.slice(i + 1))
      if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new ClamdError(`BULWARK_CLAMD must be host:port or a socket path (got ${address})`)
      this.target = { hostname: address.slice(0, i).replace(/^\[|\]$/g, ''), port }
    }
  }

  /** Sends `command` (and optional stream chunks) and returns clamd's reply, without the trailing NUL. */
  private exchange(command: string, timeoutMs: number, payload?: Uint8Array): Promise<string> {
    return new Promise((resolve, reject) => {
      let reply = ''
      let settled = false
      const finish = (err: Error | undefined, value?: string) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (err) reject(err)
        else resolve(value!)
      }
      const timer = setTimeout(() => {
        finish(new ClamdTimeout(`clamd did not answer ${command} within ${timeoutMs}ms`))
        sock?.end()
      }, timeoutMs)
      let sock: { write(d: Uint8Array | string): number; end(): void; flush?(): void } | undefined
      const handlers = {
        open: (s: { write(d: Uint8Array | string): number; end(): void }) => {
          sock = s
          const parts: Uint8Array[] = [new TextEncoder().encode(`z${command}\0`)]
          if (payload) {
            for (let off = 0; off < payload.length; off += CHUNK) {
              const chunk = payload.subarray(off, off + CHUNK)
              const len = new Uint8Array(4)
              new DataView(len.buffer).setUint32(0, chunk.length)
              parts.push(len, chunk)
            }
            parts.push(new Uint8Array(4))
          }
          const all = Buffer.concat(parts)
          let written = 0
          const pump = () => {
            while (written < all.length) {
              const n = s.write(all.subarray(written))
              if (n <= 0) return
              written += n
            }
          }
          pump()
          ;(s as unknown as { data: { pump: () => void } }).data = { pump }
        },
        drain: (s: unknown) => (s as { data?: { pump: () => void } }).data?.pump(),
        data: (_s: unknown, d: Uint8Array) => {
          reply += new TextDecoder().decode(d)
          if (reply.includes('\0')) finish(undefined, reply.slice(0, reply.indexOf('\0')).trim())
        },
        close: () => finish(reply ? undefined : new ClamdError('clamd closed the connection'), reply.replace(/\0$/, '').trim()),
        error: (_s: unknown, e: Error) => finish(new ClamdError(`clamd: ${e.message}`)),
        connectError: (_s: unknown, e: Error) => finish(new ClamdError(`cannot reach clamd: ${e.message}`)),
      }
      const opts = 'unix' in this.target ? { unix: this.target.unix, socket: handlers } : { hostname: this.target.hostname, port: this.target.port, socket: handlers }
      Bun.connect(opts as Parameters<typeof Bun.connect>[0]).catch((e: Error) => finish(new ClamdError(`cannot reach clamd: ${e.message}`)))
    })
  }

  /** True when clamd answers PONG. */
  async ping(): Promise<boolean> {
    return (await this.exchange('PING', this.timeouts.connectMs)) === 'PONG'
  }

  /** Scans bytes; throws ClamdError (ClamdTimeout for a missed deadline) when clamd cannot give a verdict. */
  async scan(bytes: Uint8Array): Promise<ScanResult> {
    if (!(await this.ping())) throw new ClamdError('clamd did not answer PONG')
    const r = await this.exchange('INSTREAM', this.timeouts.scanMs, bytes)
    if (/^stream: OK$/.test(r)) return { clean: true }
    const m = /^stream: (.+) FOUND$/.exec(r)
    if (m) return { clean: false, signature: m[1]! }
    throw new ClamdError(`clamd could not scan: ${r.slice(0, 120)}`)
  }
}
