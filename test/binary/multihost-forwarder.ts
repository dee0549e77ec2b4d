/**
 * A plain TCP forwarder, run as its own process by multihost-net.ts: PostgreSQL and Redis listen on the
 * host's loopback only, and a process inside a network namespace cannot reach the host's 127.0.0.1, so
 * each "host" reaches them at the host side of its veth pair, where this process listens and relays the
 * bytes to loopback. It runs apart from the test process so a busy load client never delays the Redis
 * invalidation relay or a database round trip.
 *
 * Bun's own sockets, not node:net streams: every chunk is written on the spot, in arrival order (with
 * node:net's pipe() the Redis subscriber's messages were seen to lag behind other traffic by milliseconds
 * under load, which reorders a published invalidation against the HTTP answer that follows it).
 *
 * Usage: bun multihost-forwarder.ts LISTEN_IP:PORT=TARGET_HOST:PORT ...; prints "ready" once every
 * listener is bound, and exits when its stdin closes (the test process ended, however it ended).
 */
import type { Socket } from 'bun'

function split(hostPort: string): [string, number] {
  const i = hostPort.lastIndexOf(':')
  return [hostPort.slice(0, i).replace(/^\[|\]$/g, ''), Number(hostPort.slice(i + 1))]
}

/** One direction's unsent bytes: written first when the socket drains, before anything newer. */
interface End {
  socket?: Socket<End>
  peer?: End
  /** Bytes for this socket that did not fit yet (or arrived before it was open). */
  backlog: Uint8Array[]
  closed: boolean
}

function send(to: End, chunk: Uint8Array) {
  if (to.closed) return
  if (!to.socket || to.backlog.length > 0) {
    to.backlog.push(chunk.slice())
    return
  }
  const n = to.socket.write(chunk)
  if (n < chunk.length) to.backlog.push(chunk.slice(n))
}

function flush(end: End) {
  while (end.socket && end.backlog.length > 0) {
    const chunk = end.backlog[0]!
    const n = end.socket.write(chunk)
    if (n < chunk.length) {
      end.backlog[0] = chunk.slice(n)
      return
    }
    end.backlog.shift()
  }
}

function close(end: End | undefined) {
  if (!end || end.closed) return
  end.closed = true
  end.socket?.end()
  close(end.peer)
}

function forward(listen: string, target: string) {
  const [lhost, lport] = split(listen)
  const [thost, tport] = split(target)
  const handlers = {
    open(s: Socket<End>) {
      if (s.data.closed) return void s.end() // the client left before the upstream connection was made
      s.setNoDelay(true)
      s.data.socket = s
      flush(s.data)
    },
    data(s: Socket<End>, chunk: Uint8Array) {
      if (s.data.peer) send(s.data.peer, chunk)
    },
    drain(s: Socket<End>) {
      flush(s.data)
    },
    close(s: Socket<End>) {
      close(s.data)
    },
    error(s: Socket<End>) {
      close(s.data)
    },
  }
  Bun.listen<End>({
    hostname: lhost,
    port: lport,
    socket: {
      ...handlers,
      open(client) {
        client.setNoDelay(true)
        const down: End = { socket: client, backlog: [], closed: false }
        const up: End = { backlog: [], closed: false, peer: down }
        down.peer = up
        client.data = down
        Bun.connect<End>({ hostname: thost, port: tport, data: up, socket: { ...handlers, connectError: () => close(down) } }).catch(() => close(down))
      },
    },
  })
}

for (const arg of process.argv.slice(2)) {
  const [l, t] = arg.split('=') as [string, string]
  forward(l, t)
}
process.stdout.write('ready\n')
process.stdin.on('end', () => process.exit(0))
process.stdin.on('close', () => process.exit(0))
process.stdin.resume()
