import { describe, expect, test } from 'bun:test'
import { oddPath } from '../../src/plugins/request-context'
import { makeApp } from '../helpers'

describe('one spelling per route', () => {
  const cases: [string, boolean][] = [
    ['http://localhost/', false],
    ['http://localhost', false],
    ['http://localhost/v1/me', false],
    ['http://localhost/v1/me?x=/', false],
    ['http://localhost/v1/me?next=a//b', false],
    ['http://localhost/v1/me/', true],
    ['http://localhost/v1/me/?x=1', true],
    ['http://localhost//v1/me', true],
    ['http://localhost/v1//me', true],
    ['http://[::1]:3000/v1/auth/login/', true],
    ['http://[::1]:3000/v1/auth/login', false],
  ]
  for (const [url, odd] of cases) test(`${url} → ${odd ? '404' : 'routed'}`, () => expect(oddPath(url)).toBe(odd))

  test('a trailing slash is a 404 through the app, with the security headers', async () => {
    const a = await makeApp()
    try {
      const res = await a.req('POST', '/v1/auth/login/', { body: { email: 'a@example.com', password: 'x' } })
      expect(res.status).toBe(404)
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(res.headers.get('content-security-policy')).toContain("default-src 'none'")
    } finally {
      a.close()
    }
  })
})
