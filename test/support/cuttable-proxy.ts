/**
 * A TCP relay on loopback that a test can cut and restore, standing between the binary and a real server
 * (PostgreSQL here): `cut()` resets every open connection and stops listening, so new connections are
 * refused, as when the database host goes away; `restore()` listens again on the same port.
 */
import type { Socket, TCPSocketListener } from 'bun'

interface Side {
  peer?: Socket<Side>
  pending: Uint8Array[]
}

export class CuttableProxy {
  private listener: TCPSocketListener<Side> | undefined
  private readonly open = new Set<Socket<Side>>()
  port = 0

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  start(): void {
    const open = this.open
    const { targetHost, targetPort } = this
    this.listener = Bun.listen<Side>({
      hostname: '127.0.0.1',
      port: this.port,
      socket: {
        open(client) {
          client.data = { pending: [] }
          open.add(client)
          void Bun.connect<Side>({
            hostname: targetHost,
            port: targetPort,
            socket: {
              open(server) {
                server.data = { peer: client, pending: [] }
                client.data.peer = server
                open.add(server)
                for (const c of client.data.pending) server.write(c)
                client.data.pending = []
              },
              data(server, chunk) {
                server.data.peer?.write(chunk)
              },
              close(server) {
                open.delete(server)
                server.data.peer?.end()
              },
              error(server) {
                server.data.peer?.end()
              },
            },
          }).catch(() => client.end())
        },
        data(client, chunk) {
          if (client.data.peer) client.data.peer.write(chunk)
          else client.data.pending.push(chunk.slice())
        },
        close(client) {
          open.delete(client)
          client.data.peer?.end()
        },
        error(client) {
          client.data.peer?.end()
        },
      },
    })
    this.port = this.listener.port
  }

  /** Resets every connection and refuses new ones. */
  cut(): void {
    this.listener?.stop(true)
    this.listener = undefined
    for (const s of this.open) s.terminate()
    this.open.clear()
  }

  restore(): void {
    if (!this.listener) this.start()
  }

  stop(): void {
    this.cut()
  }
}
