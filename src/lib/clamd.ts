/**
 * A small clamd client speaking the INSTREAM command (clamd(8)): `zINSTREAM\0`, then the bytes in chunks
 * each prefixed by a 4-byte big-endian length, then a zero length; clamd answers `stream: OK` or
 * `stream: <signature> FOUND`. Works over TCP (`host:port`) or a unix socket (a path). Every call has a
 * deadline, so a hung scanner cannot hold a request forever.
 */

export type ScanResult = { clean: true } | { clean: false; signature: string }

export class ClamdError extends Error {}

const CHUNK = 64 * 1024

export class ClamdClient {
  private readonly target: { unix: string } | { hostname: string; port: number }

  constructor(address: string, private readonly timeoutMs = 10_000) {
    if (address.startsWith('/')) this.target = { unix: address }
    else {
      const i = address.lastIndexOf(':')
      const port = Number(address.slice(i + 1))
      if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new ClamdError(`BULWARK_CLAMD must be host:port or a socket path (got ${address})`)
      this.target = { hostname: address.slice(0, i).replace(/^\[|\]$/g, ''), port }
    }
  }

  /** Sends `command` (and optional stream chunks) and returns clamd's reply, without the trailing NUL. */
  private exchange(command: string, payload?: Uint8Array): Promise<string> {
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
        finish(new ClamdError('clamd did not answer in time'))
        sock?.end()
      }, this.timeoutMs)
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
    return (await this.exchange('PING')) === 'PONG'
  }

  /** Scans bytes; throws ClamdError when clamd cannot give a verdict. */
  async scan(bytes: Uint8Array): Promise<ScanResult> {
    const r = await this.exchange('INSTREAM', bytes)
    if (/^stream: OK$/.test(r)) return { clean: true }
    const m = /^stream: (.+) FOUND$/.exec(r)
    if (m) return { clean: false, signature: m[1]! }
    throw new ClamdError(`clamd could not scan: ${r.slice(0, 120)}`)
  }
}
