import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { makeApp, type TestApp } from '../helpers'

describe('OpenAPI docs', () => {
  let a: TestApp
  let doc: any
  beforeAll(async () => {
    a = await makeApp()
    doc = (await a.req('GET', '/docs/json')).body
  })
  afterAll(() => a.close())

  test('the document is OpenAPI 3 with a bearer scheme', () => {
    expect(doc.openapi).toMatch(/^3\./)
    expect(doc.info.title).toBe('Bulwark')
    expect(doc.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
  })

  test('every route of the app is documented with a tag, a summary and responses', () => {
    const documented = new Set<string>()
    for (const [path, ops] of Object.entries<any>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(ops)) {
        documented.add(`${method.toUpperCase()} ${path}`)
        expect(op.tags?.length, `${method} ${path} has a tag`).toBeGreaterThan(0)
        expect(op.summary, `${method} ${path} has a summary`).toBeTruthy()
        expect(Object.keys(op.responses ?? {}).length, `${method} ${path} has responses`).toBeGreaterThan(0)
        for (const [code, r] of Object.entries<any>(op.responses)) expect(r.description, `${method} ${path} ${code} has a description`).toBeTruthy()
      }
    }
    const routes = a.app.routes.filter((r) => !r.path.startsWith('/docs') && r.method !== 'HEAD')
    expect(routes.length).toBeGreaterThan(0)
    for (const r of routes) {
      const p = r.path.replace(/:(\w+)/g, '{$1}')
      expect(documented.has(`${r.method} ${p}`), `${r.method} ${r.path} documented`).toBe(true)
    }
  })

  const operations = () =>
    Object.entries<any>(doc.paths).flatMap(([path, ops]) => Object.entries<any>(ops).map(([method, op]) => ({ path, method, op, key: `${method.toUpperCase()} ${path}` })))

  test('every request body shows its media type and its real schema (not content: {})', () => {
    const withBody = a.app.routes.filter((r) => (r.hooks as any).body && !r.path.startsWith('/docs'))
    expect(withBody.length).toBeGreaterThanOrEqual(22)
    for (const r of withBody) {
      const op = doc.paths[r.path.replace(/:(\w+)/g, '{$1}')][r.method.toLowerCase()]
      const content = op.requestBody?.content ?? {}
      const upload = r.path === '/v1/files' || r.path === '/v1/me/avatar'
      // The OAuth endpoints take form bodies (RFC 6749 §4.4.2) and ignore unknown parameters (§3.2).
      const oauth = r.path.startsWith('/oauth/')
      expect(Object.keys(content), `${r.method} ${r.path}`).toEqual([upload ? 'multipart/form-data' : oauth ? 'application/x-www-form-urlencoded' : 'application/json'])
      const schema = Object.values<any>(content)[0].schema
      const declared = (r.hooks as any).body
      expect(Object.keys(schema.properties ?? {}).sort(), `${r.method} ${r.path}`).toEqual(Object.keys(declared.properties ?? declared.anyOf?.find((x: any) => x.properties)?.properties ?? {}).sort())
      expect(schema.additionalProperties, `${r.method} ${r.path} refuses unknown fields`).toBe(oauth)
    }
    expect(doc.paths['/v1/auth/register'].post.requestBody.content['application/json'].schema.properties.email.maxLength).toBe(254)
    expect(doc.paths['/v1/files'].post.requestBody.content['multipart/form-data'].schema.properties.file.format).toBe('binary')
    // An optional body (refresh may use the cookie instead) is not required.
    expect(doc.paths['/v1/auth/refresh'].post.requestBody.required).toBe(false)
    expect(doc.paths['/v1/auth/login'].post.requestBody.required).toBe(true)
  })

  test('every 4xx/5xx is the shared problem document as application/problem+json', () => {
    expect(doc.components.schemas.Problem.required).toEqual(['type', 'title', 'status', 'detail', 'code', 'requestId'])
    expect(doc.components.schemas.Problem.properties.code.enum).toContain('malformed_json')
    let count = 0
    for (const { key, op } of operations()) {
      for (const [status, r] of Object.entries<any>(op.responses)) {
        if (Number(status) < 400 || (key === 'GET /health/ready' && status === '503')) continue
        // RFC 6749 §5.2 errors on the OAuth endpoints.
        if (key.startsWith('POST /oauth/') && (status === '400' || status === '401')) {
          expect(Object.keys(r.content), `${key} ${status}`).toEqual(['application/json'])
          expect(r.content['application/json'].schema.required, `${key} ${status}`).toEqual(['error'])
          continue
        }
        count++
        expect(Object.keys(r.content), `${key} ${status}`).toEqual(['application/problem+json'])
        expect(r.content['application/problem+json'].schema, `${key} ${status}`).toEqual({ $ref: '#/components/schemas/Problem' })
        expect(r.content['application/problem+json'].example.status, `${key} ${status}`).toBe(Number(status))
      }
    }
    expect(count).toBeGreaterThan(200)
  })

  test('each operation lists the statuses the cross-cutting layers can answer', () => {
    for (const { key, path, method, op } of operations()) {
      const has = (s: number) => expect(op.responses[String(s)], `${key} documents ${s}`).toBeDefined()
      if (!/^\/(health|metrics|docs)/.test(path)) has(429)
      if (op.requestBody || ['post', 'put', 'patch', 'delete'].includes(method)) [400, 413, 415].forEach(has)
      if (op.security?.length) has(401)
      if (op['x-permission']) has(403)
      if (op.parameters?.some((p: any) => p.in === 'path')) [404, 422].forEach(has)
    }
    expect(doc.paths['/v1/roles'].post.responses['409']).toBeDefined()
    expect(doc.paths['/v1/users/{id}'].get.responses['403']).toBeDefined()
  })

  test('/docs is served from the binary with its own CSP and no external URLs', async () => {
    const page = await a.req('GET', '/docs')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toContain('text/html')
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    const scriptSrc = page.headers.get('content-security-policy')!.split(';').find((d) => d.trim().startsWith('script-src'))!
    expect(scriptSrc).not.toContain('unsafe-inline')
    expect(page.text).not.toMatch(/https?:\/\//)
    expect(page.text).not.toMatch(/<script>[^<]/)
    for (const src of page.text.match(/(?:src|href)="([^"]+)"/g) ?? []) {
      const url = src.replace(/^(?:src|href)="|"$/g, '')
      const asset = await a.req('GET', url)
      expect(asset.status, url).toBe(200)
      expect(asset.text.length, url).toBeGreaterThan(100)
    }
    const init = await a.req('GET', '/docs/assets/init.js')
    expect(init.text).toContain('/docs/json')
  })
})
