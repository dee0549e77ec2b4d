/**
 * Offline API docs: the OpenAPI 3.1 document at /docs/json (./openapi-document.ts) and Swagger UI at
 * /docs, whose script and stylesheet come from swagger-ui-dist embedded in the binary. The page has no
 * inline script (its start-up code is a file too), so its CSP allows scripts from 'self' only.
 */
import { Elysia } from 'elysia'
import bundlePath from 'swagger-ui-dist/swagger-ui-bundle.js' with { type: 'file' }
import cssPath from 'swagger-ui-dist/swagger-ui.css' with { type: 'file' }
import { VERSION } from '../version'
import { buildDocument, type RouteSource } from './openapi-document'

export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; " +
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

const PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bulwark API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>`

const INIT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({ url: '/docs/json', dom_id: '#swagger-ui', validatorUrl: null, deepLinking: true, tryItOutEnabled: false });
});`

const asset = (body: BodyInit | Blob, type: string) =>
  new Response(body, { headers: { 'content-type': type, 'cache-control': 'public, max-age=86400', 'x-content-type-options': 'nosniff' } })

const DOCUMENTATION = {
  info: {
    title: 'Bulwark',
    version: VERSION,
    description: 'Authentication and access-control server: accounts, sessions, second factors, roles and permissions, audit trail.',
  },
  servers: [{ url: '/', description: 'This server' }],
  tags: [
    { name: 'auth', description: 'Sign-in, tokens and account recovery' },
    { name: 'me', description: 'The signed-in user' },
    { name: 'mfa', description: 'Second factors' },
    { name: 'administration', description: 'Users, roles, permissions and policy decisions' },
    { name: 'audit', description: 'Security events' },
    { name: 'files', description: 'Uploads' },
    { name: 'health', description: 'Liveness, readiness and metrics' },
  ],
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
  },
}

export function docs() {
  const plugin = new Elysia({ name: 'docs' })
  // Built on the first request (every route is registered by then) and again only if routes were added.
  let cached: { routes: number; doc: unknown } | undefined
  return plugin
    .get(
      '/docs/json',
      () => {
        const source = plugin as unknown as RouteSource
        const count = source.getGlobalRoutes().length
        if (cached?.routes !== count) cached = { routes: count, doc: buildDocument(source, DOCUMENTATION) }
        return cached.doc
      },
      { detail: { hide: true } },
    )
    .get('/docs', () => new Response(PAGE, { headers: { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': DOCS_CSP } }), {
      detail: { hide: true },
    })
    .get('/docs/assets/swagger-ui-bundle.js', () => asset(Bun.file(bundlePath), 'text/javascript; charset=utf-8'), { detail: { hide: true } })
    .get('/docs/assets/swagger-ui.css', () => asset(Bun.file(cssPath), 'text/css; charset=utf-8'), { detail: { hide: true } })
    .get('/docs/assets/init.js', () => asset(INIT, 'text/javascript; charset=utf-8'), { detail: { hide: true } })
}
