/**
 * Client addresses. X-Forwarded-For is believed only when the socket peer is a configured proxy, and then
 * walked right to left past every trusted hop (the left-most entries are whatever the client wrote).
 */
import { isIP } from 'node:net'

/** `::ffff:1.2.3.4` → `1.2.3.4`; lower-cases IPv6. */
export function normalizeIp(ip: string): string {
  const s = ip.trim().toLowerCase()
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  return m ? m[1]! : s
}

function v4ToBig(ip: string): bigint {
  return ip.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n)
}

function v6ToBig(ip: string): bigint {
  let s = ip
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  if (v4tail) {
    const n = v4ToBig(v4tail[1]!)
    s = s.slice(0, -v4tail[1]!.length) + ((n >> 16n) & 0xffffn).toString(16) + ':' + (n & 0xffffn).toString(16)
  }
  const [head, tail] = s.split('::') as [string, string | undefined]
  const h = head ? head.split(':') : []
  const t = tail !== undefined && tail !== '' ? tail.split(':') : []
  const fill = tail !== undefined ? new Array(8 - h.length - t.length).fill('0') : []
  return [...h, ...fill, ...t].reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g || '0', 16)), 0n)
}

interface Cidr {
  v: 4 | 6
  base: bigint
  bits: number
}

export function parseCidr(s: string): Cidr | undefined {
  const [addrRaw, bitsRaw] = s.trim().split('/')
  const addr = normalizeIp(addrRaw ?? '')
  const v = isIP(addr)
  if (v === 0) return undefined
  const width = v === 4 ? 32 : 128
  const bits = bitsRaw === undefined ? width : Number(bitsRaw)
  if (!Number.isInteger(bits) || bits < 0 || bits > width) return undefined
  const n = v === 4 ? v4ToBig(addr) : v6ToBig(addr)
  const shift = BigInt(width - bits)
  return { v: v as 4 | 6, base: (n >> shift) << shift, bits }
}

/** A matcher for a list of addresses/CIDRs. Invalid entries are reported by `invalidCidrs`. */
export function cidrMatcher(list: string[]): (ip: string) => boolean {
  const cidrs = list.map(parseCidr).filter((c): c is Cidr => c !== undefined)
  if (cidrs.length === 0) return () => false
  return (ipRaw: string) => {
    const ip = normalizeIp(ipRaw)
    const v = isIP(ip)
    if (v === 0) return false
    const n = v === 4 ? v4ToBig(ip) : v6ToBig(ip)
    return cidrs.some((c) => {
      if (c.v !== v) return false
      const shift = BigInt((v === 4 ? 32 : 128) - c.bits)
      return n >> shift === c.base >> shift
    })
  }
}

export const invalidCidrs = (list: string[]): string[] => list.filter((s) => parseCidr(s) === undefined)

/** Picks the client address from the socket peer and, behind trusted proxies only, X-Forwarded-For. */
export function clientIp(peer: string | undefined, xff: string | null, trusted: (ip: string) => boolean): string {
  const p = peer ? normalizeIp(peer) : 'unknown'
  if (!xff || p === 'unknown' || !trusted(p)) return p
  const hops = xff.split(',').map((h) => normalizeIp(h)).filter((h) => h.length > 0)
  for (let i = hops.length - 1; i >= 0; i--) {
    const h = hops[i]!
    if (isIP(h) === 0) return p
    if (!trusted(h)) return h
  }
  return hops[0] ?? p
}

/** Rate-limit key of an address: IPv6 clients are grouped by /64 (one subscriber's whole prefix). */
export function ipKey(ip: string): string {
  if (isIP(ip) !== 6) return ip
  const n = v6ToBig(ip) >> 64n
  const groups: string[] = []
  for (let i = 3; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16))
  return `${groups.join(':')}::/64`
}
