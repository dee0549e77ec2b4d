import { describe, expect, test } from 'bun:test'
import { fallbackOrigin, pathAndQuery, pathOf, withUsableUrl } from '../../src/lib/request-url'

describe('withUsableUrl', () => {
  test('a usable request passes through as the same object', () => {
    const r = new Request('http://127.0.0.1:3000/health/live?x=1')
    expect(withUsableUrl(r, 'http://localhost')).toBe(r)
  })
  // Bun gives a relative URL when Host is missing (HTTP/1.0) or unusable; a Host under 4 characters misroutes in Elysia.
  test.each([
    ['http://x/health/live', 'http://localhost/health/live'],
    ['http://abc/v1/me?a=b', 'http://localhost/v1/me?a=b'],
    ['http://abc', 'http://localhost/'],
    ['http://abc?q', 'http://localhost/?q'],
  ])('%s → %s', (url, want) => {
    const r = withUsableUrl(new Request(url, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } }), 'http://localhost')
    expect(r.url).toBe(want)
    expect(r.method).toBe('POST')
    expect(r.headers.get('content-type')).toBe('application/json')
  })
  test('a repaired request keeps its body', async () => {
    const r = withUsableUrl(new Request('http://x/a', { method: 'POST', body: 'hello' }), 'http://localhost')
    expect(await r.text()).toBe('hello')
  })
})

describe('path helpers', () => {
  test.each([
    ['/a/b?c=d', '/a/b?c=d', '/a/b'],
    ['http://h.example/a?c', '/a?c', '/a'],
    ['https://h.example', '/', '/'],
    ['http://h.example?q=1', '/?q=1', '/'],
  ])('%s', (url, pq, p) => {
    expect(pathAndQuery(url)).toBe(pq)
    expect(pathOf(url)).toBe(p)
  })
  test('fallbackOrigin is the public origin unless it is too short to route', () => {
    expect(fallbackOrigin('https://auth.example.com/base')).toBe('https://auth.example.com')
    expect(fallbackOrigin('http://a.b')).toBe('http://localhost')
    expect(fallbackOrigin('not a url')).toBe('http://localhost')
  })
})
