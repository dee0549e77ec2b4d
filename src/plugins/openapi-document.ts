/**
 * Builds the OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0) from the routes, with two
 * corrections to what @elysiajs/openapi derives on its own:
 *
 * - Request bodies. The plugin names a body's media types after the route's *named* parsers and skips
 *   function parsers; our one global strict parser (./body-parser.ts) is a function, so every body came
 *   out as `content: {}`. The parser is left as it is; the document generator is shown each route with
 *   the parser it really gets: `multipart/form-data` for a body with a file field, else `application/json`.
 * - Error responses. Every 4xx/5xx is an RFC 9457 problem document (`#/components/schemas/Problem`,
 *   `application/problem+json`). The statuses that cross-cutting plugins add are derived here from what
 *   the route is (rate limit, CSRF, body parsing, validation, authentication, permission), so no
 *   controller can forget one; a controller declares only its own (`...errors(404, 409)` from lib/schemas).
 */
import { toOpenAPISchema } from '@elysiajs/openapi'
import { OptionalKind } from '@sinclair/typebox'
import { ERROR_CODES } from '../lib/error-codes'
import { titleOf } from '../lib/errors'
import { isExemptPath } from '../lib/rate-limit-policies'
import { PROBLEM_MARK } from '../lib/schemas'

type Json = Record<string, any>

interface RouteLike {
  method: string
  path: string
  hooks: Json
}

/** What the document generator needs of an Elysia instance (its protected route and model lists). */
export interface RouteSource {
  getGlobalRoutes(): RouteLike[]
  getGlobalDefinitions?(): { type: Record<string, unknown> }
}

const UNSAFE = new Set(['post', 'put', 'patch', 'delete'])

/** One description per status; the codes that may come with it are in the README's "Error codes". */
const DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request: invalid JSON (`malformed_json`), a foreign cursor (`invalid_cursor`), or a spent mailed token',
  401: 'Not authenticated: no, an invalid or an ended token (`unauthorized`, `invalid_token`, …)',
  403: 'Not allowed: a missing permission (`forbidden`), a second factor to enrol first (`mfa_enrollment_required`), or a cookie request without its CSRF token (`csrf_failed`)',
  404: 'Not found, or not visible to the caller (`not_found`)',
  409: 'Conflicts with the current state (`conflict` and the specific codes of the route)',
  413: 'Body too large (`payload_too_large`)',
  415: 'Body not `application/json` (uploads: `multipart/form-data`), compressed, or a file type not accepted (`unsupported_media_type`)',
  422: 'The body, query or path fails its schema (`validation_failed`, with `errors`) or a rule of the route',
  429: 'Rate limited (`rate_limited`, `mfa_locked`); see `Retry-After`',
  500: 'Unexpected failure (`internal`): quote the request id',
  503: 'A dependency is unavailable; try again later',
}

const REASONS: Record<string, string> = { '200': 'OK', '201': 'Created', '202': 'Accepted' }

/** An example body per status, with the first registered code of that status. */
const exampleOf = (status: number) => {
  const code = Object.entries(ERROR_CODES).find(([, v]) => (v.status as readonly number[]).includes(status))?.[0] ?? 'internal'
  return { type: `urn:bulwark:problem:${code}`, title: titleOf(status), status, detail: ERROR_CODES[code as keyof typeof ERROR_CODES].meaning, code, requestId: '0192f1e4-7b3a-7c4d-9e8f-0a1b2c3d4e5f' }
}

const problemResponse = (status: number) => ({
  description: DESCRIPTIONS[status] ?? 'Error',
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' }, example: exampleOf(status) } },
})

/** The RFC 9457 problem document, with `code` limited to the registry. */
export const PROBLEM_SCHEMA = {
  type: 'object',
  description: 'RFC 9457 problem document',
  required: ['type', 'title', 'status', 'detail', 'code', 'requestId'],
  properties: {
    type: { type: 'string', description: 'URI reference naming the problem type: `urn:bulwark:problem:<code>`' },
    title: { type: 'string', description: 'Short summary of the status' },
    status: { type: 'integer', minimum: 400, maximum: 599 },
    detail: { type: 'string', description: 'What went wrong, for a person' },
    code: { type: 'string', enum: Object.keys(ERROR_CODES), description: 'Stable machine-readable code (README "Error codes")' },
    requestId: { type: 'string', description: 'The X-Request-Id of the request' },
    errors: {
      type: 'array',
      description: 'Failing fields (JSON pointers) of a validation error; never the submitted values',
      items: { type: 'object', required: ['path', 'message'], properties: { path: { type: 'string' }, message: { type: 'string' } }, additionalProperties: false },
    },
  },
  additionalProperties: true,
}

const hasFileField = (schema: Json | undefined): boolean =>
  !!schema && Object.values<Json>(schema.properties ?? {}).some((p) => p?.format === 'binary' || p?.type === 'File' || p?.default === 'File')

/** Statuses a route can answer because of the global plugins and its own hooks. */
export function derivedStatuses(method: string, path: string, hooks: Json): number[] {
  const m = method.toLowerCase()
  const detail = hooks.detail ?? {}
  const out = new Set<number>([500])
  if (!isExemptPath(path)) out.add(429).add(503)
  if (UNSAFE.has(m)) out.add(400).add(403).add(413).add(415) // the strict body parser runs; CSRF checks cookie requests
  if (hooks.body || hooks.query || hooks.params) out.add(422)
  if (hooks.query?.properties?.cursor) out.add(400)
  if (hooks.params) out.add(404)
  if (detail.security?.length) out.add(401)
  if (detail['x-permission']) out.add(403)
  return [...out]
}

/** camelCase operationId from Elysia's (which keeps dots and dashes of paths like /.well-known/jwks.json). */
const safeOperationId = (id: string) => id.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))

/**
 * OpenAPI 3.1 is JSON Schema 2020-12: `nullable` (3.0) becomes a `null` member of the type or union.
 * Numbers are documented as numbers: query and path values are digits on the wire, and JSON bodies take
 * only JSON numbers (`JsonInteger` in lib/schemas).
 */
function toOpenApi31(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(toOpenApi31)
  if (!node || typeof node !== 'object') return
  const o = node as Json
  // Elysia writes t.Numeric/t.Integer as "a numeric string or a number"; the contract is the number.
  if (Array.isArray(o.anyOf) && o.anyOf.length === 2) {
    const str = o.anyOf.find((b: Json) => b.type === 'string' && (b.format === 'numeric' || b.format === 'integer'))
    const num = o.anyOf.find((b: Json) => b.type === 'number' || b.type === 'integer')
    if (str && num) {
      delete o.anyOf
      Object.assign(o, num, { type: str.format === 'integer' ? 'integer' : num.type })
    }
  }
  if (o.nullable === true) {
    delete o.nullable
    if (typeof o.type === 'string') o.type = [o.type, 'null']
    else if (Array.isArray(o.type) && !o.type.includes('null')) o.type.push('null')
    else if (Array.isArray(o.anyOf) && !o.anyOf.some((x: Json) => x.type === 'null')) o.anyOf.push({ type: 'null' })
  }
  for (const v of Object.values(o)) toOpenApi31(v)
}

/** The full document: paths from the routes, plus the given top-level fields. */
export function buildDocument(source: RouteSource, base: Json): Json {
  const routes = source.getGlobalRoutes()
  const byKey = new Map<string, RouteLike>()
  const view: RouteSource = {
    getGlobalDefinitions: () => source.getGlobalDefinitions?.() ?? { type: {} },
    getGlobalRoutes: () =>
      routes.map((r) => {
        byKey.set(`${r.method.toLowerCase()} ${r.path.replace(/:([^/]+)/g, '{$1}')}`, r)
        // A route that names its parser (`parse: 'urlencoded'`) keeps it; the others get what the global parser takes.
        const named = ((r.hooks.parse ?? []) as { fn: unknown }[]).filter((p) => typeof p.fn === 'string')
        const parse = r.hooks.body ? (named.length ? named : [{ fn: hasFileField(r.hooks.body) ? 'multipart/form-data' : 'application/json' }]) : undefined
        return { ...r, hooks: { ...r.hooks, parse } }
      }),
  }
  const { paths, components } = toOpenAPISchema(view as never, { staticFile: false }, undefined, undefined, '3.1.0') as Json
  for (const [path, ops] of Object.entries<Json>(paths)) {
    for (const [method, op] of Object.entries<Json>(ops)) {
      const route = byKey.get(`${method} ${path}`)
      if (!route) continue
      op.operationId = safeOperationId(op.operationId)
      if (op.requestBody) {
        if (route.hooks.body?.[OptionalKind] === 'Optional') op.requestBody.required = false
        if (op.requestBody.description === undefined) delete op.requestBody.description
      }
      // Public operations say so (`security: []`) rather than leaving it unsaid.
      op.security ??= []
      const responses: Json = op.responses ?? {}
      for (const [status, r] of Object.entries<Json>(responses)) {
        const schema = r.content?.['application/json']?.schema
        if (schema?.[PROBLEM_MARK]) responses[status] = problemResponse(Number(status))
        // A 204 has no body (RFC 9110 §15.3.5); the generator writes the t.Void/t.Null schema as if it were a media type.
        else if (status === '204') responses[status] = { description: 'No content' }
        else if (/^Response for status/.test(r.description ?? '')) r.description = REASONS[status] ?? 'Success'
      }
      for (const s of derivedStatuses(method, route.path, route.hooks)) responses[String(s)] ??= problemResponse(s)
      op.responses = Object.fromEntries(Object.entries(responses).sort(([a], [b]) => Number(a) - Number(b)))
    }
  }
  toOpenApi31(paths)
  toOpenApi31(components)
  return {
    ...base,
    openapi: '3.1.0',
    paths,
    components: { ...base.components, schemas: { ...components?.schemas, ...base.components?.schemas, Problem: PROBLEM_SCHEMA } },
  }
}
