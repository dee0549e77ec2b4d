/**
 * A stand-in clamd on a free loopback port: `hang` accepts connections and never answers (what a wedged
 * clamd looks like from outside, which a real clamd cannot be made to do on demand); `ok` answers PING
 * with PONG and every INSTREAM with `stream: OK`. Counts connections, i.e. calls that reached "clamd".
 */
import type { TCPSocketListener } from 'bun'

export class FakeClamd {
  mode: 'hang' | 'ok' = 'hang'
  connections = 0
  /** The command of each connection (`PING`, `INSTREAM`), answered or not. */
  commands: string[] = []
  private readonly server: TCPSocketListener<{ buf: Buffer }>

  constructor() {
    this.server = Bun.listen<{ buf: Buffer }>({
      hostname: '127.0.0.1',
      port: 0,
      socket: {
        open: (s) => {
          this.connections++
          s.data = { buf: Buffer.alloc(0) }
        },
        data: (s, d) => {
          const fresh = s.data.buf.indexOf(0) < 0
          s.data.buf = Buffer.concat([s.data.buf, d])
          const b = s.data.buf
          const nul = b.indexOf(0)
          if (fresh && nul > 0) this.commands.push(b.subarray(1, nul).toString('latin1'))
          if (this.mode === 'hang') return
          if (b.toString('latin1').startsWith('zPING\0')) s.end('PONG\0')
          else if (b.toString('latin1').startsWith('zINSTREAM\0') && b.length >= 14 && b.subarray(-4).equals(Buffer.alloc(4))) s.end('stream: OK\0')
        },
      },
    })
  }

  get address(): string {
    return `127.0.0.1:${this.server.port}`
  }

  stop(): void {
    this.server.stop(true)
  }
}
