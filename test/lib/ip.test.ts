import { describe, expect, test } from 'bun:test'
import { cidrMatcher, clientIp, invalidCidrs, ipKey, normalizeIp } from '../../src/lib/ip'

describe('client ip', () => {
  const trusted = cidrMatcher(['10.0.0.0/8', '::1'])

  test('X-Forwarded-For from an untrusted peer is ignored', () => {
    expect(clientIp('198.51.100.7', '1.2.3.4', trusted)).toBe('198.51.100.7')
  })

  test('behind a trusted proxy the right-most untrusted hop wins', () => {
    expect(clientIp('10.0.0.5', 'spoofed, 203.0.113.9, 10.0.0.4', trusted)).toBe('203.0.113.9')
    expect(clientIp('::1', '2001:db8::1', trusted)).toBe('2001:db8::1')
  })

  test('IPv4-mapped IPv6 is mapped to IPv4', () => {
    expect(normalizeIp('::ffff:192.0.2.1')).toBe('192.0.2.1')
    expect(cidrMatcher(['192.0.2.0/24'])('::ffff:192.0.2.1')).toBe(true)
  })

  test('IPv6 rate-limit keys group by /64', () => {
    expect(ipKey('2001:db8:1:2:aaaa::1')).toBe(ipKey('2001:db8:1:2:ffff:ffff:ffff:ffff'))
    expect(ipKey('2001:db8:1:2::1')).not.toBe(ipKey('2001:db8:1:3::1'))
    expect(ipKey('192.0.2.1')).toBe('192.0.2.1')
  })

  test('CIDR matching and invalid entries', () => {
    const m = cidrMatcher(['192.168.0.0/16', '2001:db8::/32'])
    expect(m('192.168.44.1')).toBe(true)
    expect(m('192.169.0.1')).toBe(false)
    expect(m('2001:db8:ffff::1')).toBe(true)
    expect(m('2001:db9::1')).toBe(false)
    expect(invalidCidrs(['10.0.0.0/8', 'nonsense', '1.2.3.4/40'])).toEqual(['nonsense', '1.2.3.4/40'])
  })
})
