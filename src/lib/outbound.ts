/**
 * Outbound HTTP for calls to addresses that users configure (webhooks): no redirects, a hard deadline, a
 * bounded answer, and no private targets unless allowed.
 *
 * SSRF defence at connection time: the request goes through node:http(s) with a `lookup` hook. The hook
 * resolves the host name with `dns.lookup` (all addresses), refuses the request if ANY address is private,
 * loopback, link-local, unique-local, CGNAT, multicast, reserved or unspecified (IPv4 and IPv6, IPv4-mapped
 * IPv6 included), and hands exactly the checked addresses to the socket. The socket therefore connects to an
 * address that was checked, with no second resolution a rebinding DNS server could answer differently, while
 * the request keeps the original `Host` header and TLS server name (SNI and certificate checks use the name).
 * An IP literal in the URL is checked directly (no lookup happens for it).
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import http from 'node:http'
import https from 'node:https'
import { isIP } from 'node:net'
import { cidrMatcher, normalizeIp } from './ip'

/** Special-purpose ranges (RFC 6890, RFC 6598, RFC 4193, RFC 4291) that a user-configured URL may not reach. */
const BLOCKED_V4 = [
  '0.0.0.0/8', // "this network", unspecified
  '10.0.0.0/8',
  '100.64.0.0/10', // CGNAT (RFC 6598)
  '127.0.0.0/8',
  '169.254.0.0/16', // link-local (cloud metadata lives here)
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15', // benchmarking
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
]
const BLOCKED_V6 = [
  '::/128', // unspecified
  '::1/128',
  '::ffff:0:0/96', // IPv4-mapped (the dotted form is checked as IPv4 first)
  '64:ff9b::/96', // NAT64 of any IPv4 address
  '100::/64', // discard
  'fc00::/7', // unique-local
  'fe80::/10', // link-local
  'fec0::/10', // site-local (deprecated)
  'ff00::/8', // multicast
]
const blockedV4 = cidrMatcher(BLOCKED_V4)
const blockedV6 = cidrMatcher(BLOCKED_V6)

/** True for an address a webhook may not reach unless private targets are allowed. */
export function isPrivateAddress(raw: string): boolean {
  const ip = normalizeIp(raw.replace(/^\[|\]$/g, ''))
  const v = isIP(ip)
  if (v === 4) return blockedV4(ip)
  if (v === 6) return blockedV6(ip)
  return true // not an address at all: refuse
}

export class OutboundError extends Error {
  constructor(
    readonly reason: 'refused' | 'timeout' | 'network' | 'too_large',
    message: string,
  ) {
    super(message)
    this.name = 'OutboundError'
  }
}

export interface PostOptions {
  headers: Record<string, string>
  body: string
  timeoutMs: number
  allowPrivate: boolean
  /** At most this many bytes of the answer are read (default 64 KiB); the rest is discarded. */
  maxResponseBytes?: number
}

export interface PostResult {
  status: number
  /** The first `maxResponseBytes` of the answer, as text. */
  body: string
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/** A `lookup` for node:net that resolves every address and refuses the connection if any of them is private. */
function checkedLookup(allowPrivate: boolean) {
  return (hostname: string, options: { all?: boolean; family?: number } | number, callback: LookupCallback) => {
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => {
      if (err) return callback(err, [])
      const list = addresses as LookupAddress[]
      if (list.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), [])
      if (!allowPrivate) {
        const bad = list.find((a) => isPrivateAddress(a.address))
        if (bad) return callback(new OutboundError('refused', `refused: ${hostname} resolves to a private or reserved address`) as NodeJS.ErrnoException, [])
      }
      const all = typeof options === 'object' && options.all
      if (all) callback(null, list)
      else callback(null, list[0]!.address, list[0]!.family)
    })
  }
}

/** Why a URL may not be called, or undefined when it may (scheme, credentials, IP-literal targets). */
export function urlProblem(raw: string, opts: { allowPrivate: boolean; requireHttps: boolean; localNames?: boolean }): string | undefined {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    return 'is not an absolute URL'
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'must be http:// or https://'
  if (opts.requireHttps && u.protocol !== 'https:') return 'must be https:// in production'
  if (u.username || u.password) return 'must not carry credentials'
  const host = u.hostname.replace(/^\[|\]$/g, '')
  if (!opts.allowPrivate) {
    if (isIP(normalizeIp(host)) !== 0 && isPrivateAddress(host)) return 'targets a private, loopback or reserved address'
    if (opts.localNames !== false && /^localhost$|\.localhost$/i.test(host)) return 'targets a private, loopback or reserved address'
  }
  return undefined
}

/**
 * POSTs `body` to `url` once: redirects are not followed (a 3xx is the answer), the whole exchange must end
 * within `timeoutMs`, and private targets are refused at connection time unless `allowPrivate`.
 */
export function postOnce(url: string, opts: PostOptions): Promise<PostResult> {
  const max = opts.maxResponseBytes ?? 64 * 1024
  return new Promise<PostResult>((resolve, reject) => {
    let u: URL
    try {
      u = new URL(url)
    } catch {
      return reject(new OutboundError('refused', 'refused: not a URL'))
    }
    // Names are left to the connection-time check (the resolved addresses are what counts).
    const problem = urlProblem(url, { allowPrivate: opts.allowPrivate, requireHttps: false, localNames: false })
    if (problem) return reject(new OutboundError('refused', `refused: the URL ${problem}`))
    const mod = u.protocol === 'https:' ? https : http
    let settled = false
    const done = (f: () => void) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      f()
    }
    const req = mod.request(
      u,
      {
        method: 'POST',
        headers: { ...opts.headers, 'content-length': String(Buffer.byteLength(opts.body)) },
        lookup: checkedLookup(opts.allowPrivate) as never,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (c: Buffer) => {
          if (size >= max) return
          chunks.push(c.subarray(0, max - size))
          size += Math.min(c.length, max - size)
          // Enough read: stop the download (the status is what counts).
          if (size >= max) done(() => {
            res.destroy()
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })
          })
        })
        res.on('end', () => done(() => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })))
        res.on('error', (e) => done(() => reject(new OutboundError('network', e.message))))
      },
    )
    const timer = setTimeout(() => {
      done(() => reject(new OutboundError('timeout', `no answer within ${opts.timeoutMs} ms`)))
      req.destroy()
    }, opts.timeoutMs)
    req.on('error', (e) => done(() => reject(e instanceof OutboundError ? e : new OutboundError('network', e.message))))
    req.end(opts.body)
  })
}
