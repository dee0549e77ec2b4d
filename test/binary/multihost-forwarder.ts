/**
 * A plain TCP forwarder, run as its own process by multihost-net.ts: PostgreSQL and Redis listen on the
 * host's loopback only, and a process inside a network namespace cannot reach the host's 127.0.0.1, so
 * each "host" reaches them at the host side of its veth pair, where this process listens and relays the
 * bytes to loopback. It runs apart from the test process so a busy load client never delays the Redis
 * invalidation relay or a database round trip.
 *
 * Usage: bun multihost-forwarder.ts LISTEN_IP:PORT=TARGET_HOST:PORT ...; prints "ready" once every
 * listener is bound, and exits when its stdin closes (the test process ended, however it ended).
 */
import { connect, createServer, type Socket } from 'node:net'

function split(hostPort: string): [string, number] {
  const i = hostPort.lastIndexOf(':')
  return [hostPort.slice(0, i).replace(/^\[|\]$/g, ''), Number(hostPort.slice(i + 1))]
}

function forward(listen: string, target: string): Promise<void> {
  const [lhost, lport] = split(listen)
  const [thost, tport] = split(target)
  const server = createServer((client: Socket) => {
    const upstream = connect(tport, thost)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    // pipe() honours backpressure both ways; either side ending or failing ends the other.
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(lport, lhost, () => resolve())
  })
}

const pairs = process.argv.slice(2).map((a) => a.split('=') as [string, string])
await Promise.all(pairs.map(([l, t]) => forward(l, t)))
process.stdout.write('ready\n')
process.stdin.on('end', () => process.exit(0))
process.stdin.on('close', () => process.exit(0))
process.stdin.resume()
