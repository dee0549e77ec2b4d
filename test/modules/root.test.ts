/** GET / answers a small JSON index instead of a 404, documented in the OpenAPI document. */
import { describe, expect, test } from 'bun:test'
import { makeApp } from '../helpers'

describe('GET /', () => {
  test('names the service and links the docs, JWKS and probes under the public URL; every link answers', async () => {
    const a = await makeApp({ BULWARK_PUBLIC_URL: 'https://auth.example.com' })
    try {
      const r = await a.req('GET', '/')
      expect(r.status).toBe(200)
      expect(r.body).toEqual({
        name: 'bulwark',
        version: expect.stringMatching(/^\d+\.\d+\.\d+/),
        issuer: 'https://auth.example.com',
        docs: 'https://auth.example.com/docs',
        openapi: 'https://auth.example.com/docs/json',
        jwks: 'https://auth.example.com/.well-known/jwks.json',
        health: { live: 'https://auth.example.com/health/live', ready: 'https://auth.example.com/health/ready' },
      })
      for (const url of [r.body.docs, r.body.openapi, r.body.jwks, r.body.health.live, r.body.health.ready]) {
        expect((await a.req('GET', new URL(url).pathname)).status).toBe(200)
      }
    } finally {
      await a.close()
    }
  })

  test('the OpenAPI document describes it with a response schema', async () => {
    const a = await makeApp()
    try {
      const doc = (await a.req('GET', '/docs/json')).body
      const op = doc.paths['/']?.get
      expect(op).toBeDefined()
      const schema = op.responses['200'].content['application/json'].schema
      const resolved = schema.$ref ? doc.components.schemas[schema.$ref.split('/').pop()] : schema
      expect(Object.keys(resolved.properties)).toEqual(expect.arrayContaining(['name', 'version', 'docs', 'jwks', 'health']))
    } finally {
      await a.close()
    }
  })
})
