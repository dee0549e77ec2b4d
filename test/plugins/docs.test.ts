import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { makeApp, type TestApp } from '../helpers'

describe('OpenAPI docs', () => {
  let a: TestApp
  let doc: any
  beforeAll(async () => {
    a = makeApp()
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
