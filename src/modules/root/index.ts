/**
 * `GET /`: a small JSON index of the server, so a first request (or a curious browser) finds the
 * docs, the JWKS and the probes instead of a 404. URLs are absolute, under the public URL.
 */
import { Elysia, t } from 'elysia'
import type { Config } from '../../config'
import { VERSION } from '../../version'

export const ServiceIndex = t.Object(
  {
    name: t.Literal('bulwark'),
    version: t.String({ description: 'version of the running server' }),
    issuer: t.String({ description: 'the iss claim of access tokens (the public URL)' }),
    docs: t.String({ description: 'interactive API documentation (Swagger UI)' }),
    openapi: t.String({ description: 'the OpenAPI document' }),
    jwks: t.String({ description: 'public keys that verify access tokens' }),
    health: t.Object({ live: t.String(), ready: t.String() }),
  },
  { additionalProperties: false },
)

export function rootController(config: Pick<Config, 'publicUrl'>) {
  return new Elysia({ name: 'root' }).get(
    '/',
    ({ set }) => {
      set.headers['cache-control'] = 'no-cache'
      // Read per request: an unset BULWARK_PUBLIC_URL follows the port the server bound.
      const base = config.publicUrl
      return {
        name: 'bulwark' as const,
        version: VERSION,
        issuer: base,
        docs: `${base}/docs`,
        openapi: `${base}/docs/json`,
        jwks: `${base}/.well-known/jwks.json`,
        health: { live: `${base}/health/live`, ready: `${base}/health/ready` },
      }
    },
    {
      response: { 200: ServiceIndex },
      detail: { tags: ['health'], summary: 'Service index: name, version and the URLs of the docs, JWKS and health probes' },
    },
  )
}
