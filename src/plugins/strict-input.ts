/**
 * Strict query strings, the same on every route: a parameter the route does not declare, a parameter
 * given twice (`?limit=1&limit=2`), malformed percent-encoding, or an integer written other than in
 * decimal digits (`0x10`, `1e1`, ` 5`, `+5`, `1.0`) or outside its bounds is a 422 `validation_failed`
 * naming the parameter, before validation and the handler run (Elysia's own integer conversion reports
 * a failed bound at `/` without the parameter's name). Repeats are refused rather than resolved because parsers
 * disagree on which one wins (first, last, array), and a proxy or WAF that checks one copy must not
 * be outvoted by the other (HTTP parameter pollution). Values are never echoed, only names.
 * The rules come from each route's own TypeBox query schema (`app.routes`), read once, lazily.
 *
 * Also: a JSON body whose root is not an object (`[]`, `"text"`, `5`, `null`) is a 422 on every route
 * that takes an object. Elysia skips body validation when the body is not a non-empty object and the
 * schema has no required field, so `[]` reached the handler of `POST /v1/auth/passkey/options` and
 * stored a challenge.
 */
import { Elysia } from 'elysia'
import { unprocessable, type FieldError } from '../lib/errors'

type Kind = { kind: 'integer' | 'number' | 'other'; min?: number; max?: number }

/** What the plugin needs of a route in `app.routes`. */
export interface RouteInfo {
  method: string
  path: string
  hooks?: { query?: unknown; body?: unknown }
}

interface JsonSchemaLike {
  type?: string
  multipleOf?: number
  minimum?: number
  maximum?: number
  anyOf?: JsonSchemaLike[]
  properties?: Record<string, JsonSchemaLike>
}

/** How a query property's value must be written; Elysia coerces numbers to `anyOf[string, integer]`. */
function kindOf(s: JsonSchemaLike): Kind {
  const types = [s, ...(s.anyOf ?? [])]
  const numeric = types.some((x) => x.type === 'number')
  const bounds = { min: s.minimum ?? types.find((x) => x.minimum !== undefined)?.minimum, max: s.maximum ?? types.find((x) => x.maximum !== undefined)?.maximum }
  if (types.some((x) => x.type === 'integer') || (numeric && types.some((x) => x.multipleOf === 1))) return { kind: 'integer', ...bounds }
  if (numeric) return { kind: 'number', ...bounds }
  return { kind: 'other' }
}

/** Allowed parameter names and kinds of one route; an empty map when the route declares no query. */
export function querySpec(query: unknown): Map<string, Kind> {
  const spec = new Map<string, Kind>()
  const props = (query as JsonSchemaLike | undefined)?.properties
  if (props) for (const [name, s] of Object.entries(props)) spec.set(name, kindOf(s))
  return spec
}

const INTEGER = /^-?[0-9]+$/
const NUMBER = /^-?[0-9]+(?:\.[0-9]+)?$/

/** A parameter name safe to put in a JSON pointer of the problem document. */
const nameForPath = (name: string) => `/${name.replace(/[^\x20-\x7e]/g, '?').replace(/~/g, '~0').replace(/\//g, '~1').slice(0, 64)}`

function decode(part: string): string | undefined {
  try {
    return decodeURIComponent(part.replace(/\+/g, ' '))
  } catch {
    return undefined
  }
}

/** The problems of a raw query string (without `?`) against a route's spec; empty when it is fine. */
export function queryProblems(raw: string, spec: Map<string, Kind>): FieldError[] {
  const errors: FieldError[] = []
  const seen = new Set<string>()
  for (const part of raw.split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    const name = decode(eq < 0 ? part : part.slice(0, eq))
    const value = decode(eq < 0 ? '' : part.slice(eq + 1))
    if (name === undefined || value === undefined) {
      errors.push({ path: name === undefined ? '/' : nameForPath(name), message: 'Not valid percent-encoding' })
      continue
    }
    const kind = spec.get(name)
    if (kind === undefined) errors.push({ path: nameForPath(name), message: spec.size ? `Unknown query parameter; this route takes ${[...spec.keys()].join(', ')}` : 'This route takes no query parameters' })
    else if (seen.has(name)) errors.push({ path: nameForPath(name), message: 'Given more than once; send each query parameter once' })
    else if (kind.kind === 'integer' && !INTEGER.test(value)) errors.push({ path: nameForPath(name), message: 'Expected an integer written in decimal digits' })
    else if (kind.kind === 'number' && !NUMBER.test(value)) errors.push({ path: nameForPath(name), message: 'Expected a number written in decimal digits' })
    else if (kind.kind !== 'other' && ((kind.min !== undefined && Number(value) < kind.min) || (kind.max !== undefined && Number(value) > kind.max))) {
      errors.push({ path: nameForPath(name), message: `Expected ${kind.kind === 'integer' ? 'an integer' : 'a number'} from ${kind.min ?? '-∞'} to ${kind.max ?? '∞'}` })
    }
    seen.add(name)
    if (errors.length >= 20) break
  }
  return errors
}

interface RouteRules {
  query: Map<string, Kind>
  /** The route's body schema is an object. */
  objectBody: boolean
}

/** True when a parsed body is a JSON object; an empty body (parsed as null or undefined) is not a root at all. */
function bodyRootProblem(body: unknown, request: Request): boolean {
  if (body === undefined) return false
  // The parser gives null for an empty body too; Bun's request.body is null only when nothing was sent.
  if (body === null) return request.body !== null && request.headers.get('content-length') !== '0'
  return typeof body !== 'object' || Array.isArray(body)
}

/** The global strict-input checks; `routes` is read on the first request (the app is complete by then). */
export function strictInput(routes: () => readonly RouteInfo[]) {
  let table: Map<string, RouteRules> | undefined
  const rulesFor = (method: string, route: string) => {
    table ??= new Map(routes().map((r) => [`${r.method} ${r.path}`, { query: querySpec(r.hooks?.query), objectBody: (r.hooks?.body as JsonSchemaLike | undefined)?.type === 'object' }]))
    return table.get(`${method} ${route}`) ?? (method === 'HEAD' ? table.get(`GET ${route}`) : undefined)
  }
  return new Elysia({ name: 'strict-input' }).onTransform({ as: 'global' }, ({ request, route, body }) => {
    const rules = rulesFor(request.method, route)
    if (!rules) return
    const url = request.url
    const qi = url.indexOf('?')
    if (qi >= 0 && qi < url.length - 1) {
      const errors = queryProblems(url.slice(qi + 1), rules.query)
      if (errors.length) throw unprocessable('validation_failed', 'The request query string is not valid.', errors)
    }
    if (rules.objectBody && bodyRootProblem(body, request)) throw unprocessable('validation_failed', 'The request body is not valid.', [{ path: '/', message: 'Expected a JSON object' }])
  })
}
