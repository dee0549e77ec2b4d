/**
 * Strict query strings, the same on every route: a parameter the route does not declare, a parameter
 * given twice (`?limit=1&limit=2`), malformed percent-encoding, or an integer written other than in
 * decimal digits (`0x10`, `1e1`, ` 5`, `+5`, `1.0`) is a 422 `validation_failed` naming the parameter,
 * before validation and the handler run. Repeats are refused rather than resolved because parsers
 * disagree on which one wins (first, last, array), and a proxy or WAF that checks one copy must not
 * be outvoted by the other (HTTP parameter pollution). Values are never echoed, only names.
 * The rules come from each route's own TypeBox query schema (`app.routes`), read once, lazily.
 */
import { Elysia } from 'elysia'
import { unprocessable, type FieldError } from '../lib/errors'

type Kind = 'integer' | 'number' | 'other'

/** What the plugin needs of a route in `app.routes`. */
export interface RouteInfo {
  method: string
  path: string
  hooks?: { query?: unknown }
}

interface JsonSchemaLike {
  type?: string
  multipleOf?: number
  anyOf?: JsonSchemaLike[]
  properties?: Record<string, JsonSchemaLike>
}

/** How a query property's value must be written; Elysia coerces numbers to `anyOf[string, integer]`. */
function kindOf(s: JsonSchemaLike): Kind {
  const types = [s, ...(s.anyOf ?? [])]
  const numeric = types.some((x) => x.type === 'number')
  if (types.some((x) => x.type === 'integer') || (numeric && types.some((x) => x.multipleOf === 1))) return 'integer'
  if (numeric) return 'number'
  return 'other'
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
    else if (kind === 'integer' && !INTEGER.test(value)) errors.push({ path: nameForPath(name), message: 'Expected an integer written in decimal digits' })
    else if (kind === 'number' && !NUMBER.test(value)) errors.push({ path: nameForPath(name), message: 'Expected a number written in decimal digits' })
    seen.add(name)
    if (errors.length >= 20) break
  }
  return errors
}

/** The global strict-query check; `routes` is read on the first request (the app is complete by then). */
export function strictQuery(routes: () => readonly RouteInfo[]) {
  let table: Map<string, Map<string, Kind>> | undefined
  const specFor = (method: string, route: string) => {
    table ??= new Map(routes().map((r) => [`${r.method} ${r.path}`, querySpec(r.hooks?.query)]))
    return table.get(`${method} ${route}`) ?? (method === 'HEAD' ? table.get(`GET ${route}`) : undefined)
  }
  return new Elysia({ name: 'strict-query' }).onTransform({ as: 'global' }, ({ request, route }) => {
    const url = request.url
    const qi = url.indexOf('?')
    if (qi < 0 || qi === url.length - 1) return
    const spec = specFor(request.method, route)
    if (!spec) return
    const errors = queryProblems(url.slice(qi + 1), spec)
    if (errors.length) throw unprocessable('validation_failed', 'The request query string is not valid.', errors)
  })
}
