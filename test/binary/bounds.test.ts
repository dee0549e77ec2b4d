/**
 * Bounds and types of every query and body field, against the compiled binary over real sockets.
 * The build once silently disabled every TypeBox bound (identifier minification), while `bun test` from
 * source stayed green: this suite holds the shipped binary to the schemas.
 *
 * Query and path-parameter cases are generated from the binary's own OpenAPI document (every
 * operation, every parameter, by the kind of its schema); body cases from the field table below, which is checked against
 * the document so that a new body route or field cannot go untested. Every bad case must be a 422
 * `validation_failed` naming the field, and all of them together must write nothing (row counts of every
 * table in the run folder's SQLite file, read-only, before and after). Each table row also has a control
 * (the valid input) that must pass validation, so every bad case differs from an accepted one in one field.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { call, signIn, startBinary } from './harness'
import { dbRows, ownerWithTotp, RAISED_LIMITS, rowCounts } from './accounts'

const bin = await startBinary({ env: RAISED_LIMITS })
afterAll(() => bin.stop())
const owner = await ownerWithTotp(bin)
const target = await signIn(bin.base, 'bounds-target@example.com', 'a long passphrase for the target 7', true)
const plain = await signIn(bin.base, 'bounds-plain@example.com', 'a long passphrase for the plain 7', true)
{
  const r = await call(bin.base, 'POST', '/v1/roles', { token: owner.accessToken, body: { name: 'bounds-role', level: 20, permissions: [] } })
  if (r.status !== 201) throw new Error(`setup role: ${r.status} ${r.text}`)
}
const doc = (await call(bin.base, 'GET', '/docs/json')).json as OpenApi

interface Schema {
  type?: string
  minimum?: number
  maximum?: number
  multipleOf?: number
  minLength?: number
  maxLength?: number
  pattern?: string
  format?: string
  enum?: string[]
  const?: string
  anyOf?: Schema[]
  properties?: Record<string, Schema>
}
interface OpenApi {
  paths: Record<string, Record<string, { parameters?: { in: string; name: string; schema: Schema }[]; requestBody?: { content: Record<string, { schema?: Schema }> } }>>
}

/** A value that must go into the JSON text as written (1e309, 2^53+1), not through JSON.stringify. */
class Raw {
  constructor(readonly text: string) {}
  toString = () => this.text
}
const TWO_53_PLUS_1 = '9007199254740993'
const a = (n: number) => 'a'.repeat(n)

/** Path parameters filled with values that exist where it matters (the target user, the setup role). */
const PATH_VALUES: Record<string, string> = { id: target.userId, name: 'bounds-role', role: 'bounds-role' }
const fill = (path: string, values = PATH_VALUES) => path.replace(/\{(\w+)\}/g, (_, k: string) => values[k] ?? k)
/** Random ids for requests that must never reach a handler (a missed check could not delete anything real). */
const inert = (path: string, overrides: Record<string, string> = {}) => fill(path, { id: crypto.randomUUID(), name: 'no-such-role', role: 'no-such-role', ...overrides })

// ------------------------------------------------------------------ field kinds → bad and good values

type Kind =
  | { kind: 'integer'; min: number; max: number }
  | { kind: 'string'; min: number; max: number; pattern?: string; format?: string; nullable?: boolean }
  | { kind: 'enum'; values: string[] }
  | { kind: 'boolean' }
  | { kind: 'array'; maxItems: number; item: Kind }
  /** A nested object (a WebAuthn response): only its type is probed here; its own fields are the fuzzer's. */
  | { kind: 'object' }

/** The kind of a query parameter's schema in the OpenAPI document; throws on a shape this suite does not know. */
function kindOfSchema(s: Schema, where: string): Kind {
  const all = [s, ...(s.anyOf ?? [])]
  if (all.some((x) => x.type === 'integer' || x.multipleOf === 1)) return { kind: 'integer', min: s.minimum ?? Number.MIN_SAFE_INTEGER, max: s.maximum ?? Number.MAX_SAFE_INTEGER }
  const consts = s.enum ?? (s.anyOf?.every((x) => x.const !== undefined) ? s.anyOf.map((x) => x.const!) : undefined)
  if (consts) return { kind: 'enum', values: consts }
  if (s.type === 'string') return { kind: 'string', min: s.minLength ?? 0, max: s.maxLength ?? Number.POSITIVE_INFINITY, pattern: s.pattern, format: s.format }
  if (s.type === 'boolean') return { kind: 'boolean' }
  throw new Error(`${where}: a query parameter schema this suite has no cases for: ${JSON.stringify(s)}; add a kind`)
}

const PATTERN_BREAKERS = ['UPPER', 'has space', 'semi;colon', 'dash-ed', 'ümlaut', '9starts']
const fits = (k: Extract<Kind, { kind: 'string' }>, v: string) => v.length >= k.min && v.length <= k.max

/** Values of a kind that must be refused; `inQuery` gives the query-string spellings. */
function badValues(k: Kind, inQuery: boolean): unknown[] {
  switch (k.kind) {
    case 'integer': {
      const common = [k.min - 1, k.max + 1, -1, k.min + 0.5, new Raw('1e309'), new Raw(TWO_53_PLUS_1)]
      const unique = [...new Map(common.map((v) => [String(v), v])).values()].filter((v) => !(typeof v === 'number' && v >= k.min && v <= k.max && Number.isInteger(v)))
      return inQuery ? [...unique, '', 'abc', ' 5', '+5', '0x10', '1e1', `${k.min}.0`, 'NaN', 'Infinity'] : [...unique, String(k.min), null, true, [], {}]
    }
    case 'string': {
      const out: unknown[] = []
      if (k.min > 0) out.push('')
      if (k.min > 1) out.push('x'.repeat(k.min - 1))
      if (Number.isFinite(k.max)) out.push('x'.repeat(k.max + 1))
      if (k.pattern) out.push(...PATTERN_BREAKERS.filter((v) => fits(k, v) && !new RegExp(k.pattern!).test(v)))
      if (k.format === 'uuid') out.push('not-a-uuid', `${crypto.randomUUID().slice(0, 35)}g`)
      if (!inQuery) out.push(5, true, [], {}, ...(k.nullable ? [] : [null]))
      return out
    }
    case 'enum':
      return [...new Set(['bogus', k.values[0]!.toUpperCase(), `${k.values[0]} `, '']), ...(inQuery ? [] : [5, null, [k.values[0]]])]
    case 'boolean':
      return inQuery ? ['yes', '2'] : ['true', 1, null]
    case 'object':
      return ['text', 5, true, []]
    case 'array':
      return ['not an array', {}, Array.from({ length: k.maxItems + 1 }, () => goodValue(k.item)), ...badValues(k.item, false).map((v) => [v])]
  }
}

/** One value of a kind that is accepted. */
function goodValue(k: Kind): unknown {
  switch (k.kind) {
    case 'integer':
      return k.min
    case 'string': {
      if (k.format === 'uuid') return crypto.randomUUID()
      const candidates = ['abc', 'login', 'users:read', 'x'.repeat(Math.max(k.min, 1))]
      const v = candidates.find((c) => fits(k, c) && (!k.pattern || new RegExp(k.pattern).test(c)))
      if (v === undefined) throw new Error(`no good value for ${JSON.stringify(k)}`)
      return v
    }
    case 'object':
      return {}
    case 'enum':
      return k.values[0]
    case 'boolean':
      return true
    case 'array':
      return [goodValue(k.item)]
  }
}

const label = (v: unknown): string => {
  if (v instanceof Raw) return v.text
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 40 ? `${s.slice(0, 16)}…(${s.length} chars)` : s
}

// ------------------------------------------------------------------ the body table

interface BodyRoute {
  method: string
  path: string
  /** Accepted by validation; every case changes one field of it. */
  valid: () => Record<string, unknown>
  fields: Record<string, Kind & { required?: boolean }>
  /** `minProperties: 1`: `{}` is refused. */
  nonEmpty?: boolean
  token?: () => string
}

const str = (min: number, max: number, extra: { pattern?: string; nullable?: boolean } = {}): Kind => ({ kind: 'string', min, max, ...extra })
const TOKEN = str(20, 200, { pattern: '^[A-Za-z0-9_-]+$' })
const EMAIL = str(3, 254)
const PASSWORD = str(1, 1024)
const ROLE_NAME = str(2, 32, { pattern: '^[a-z][a-z0-9_-]{1,31}$' })
const LEVEL: Kind = { kind: 'integer', min: 0, max: 1000 }
const PERMISSIONS: Kind = { kind: 'array', maxItems: 100, item: str(3, 100) }
const req = <K extends Kind>(k: K) => ({ ...k, required: true })
const ownerToken = () => owner.accessToken
let seq = 0

const BODY_ROUTES: BodyRoute[] = [
  { method: 'POST', path: '/v1/auth/register', valid: () => ({ email: `new${++seq}@example.com`, password: 'a long passphrase for a new one 9', name: 'New' }), fields: { email: req(EMAIL), password: req(PASSWORD), name: str(1, 100) } },
  { method: 'POST', path: '/v1/auth/login', valid: () => ({ email: 'nobody@example.com', password: 'wrong', transport: 'bearer' }), fields: { email: req(EMAIL), password: req(PASSWORD), transport: { kind: 'enum', values: ['bearer', 'cookie'] } } },
  { method: 'POST', path: '/v1/auth/refresh', valid: () => ({ refreshToken: 'a'.repeat(40) }), fields: { refreshToken: TOKEN } },
  { method: 'POST', path: '/v1/auth/password/forgot', valid: () => ({ email: 'nobody@example.com' }), fields: { email: req(EMAIL) } },
  { method: 'POST', path: '/v1/auth/password/reset', valid: () => ({ token: 'a'.repeat(40), password: 'a long passphrase for a reset 9' }), fields: { token: req(TOKEN), password: req(PASSWORD) } },
  { method: 'POST', path: '/v1/auth/email/verify', valid: () => ({ token: 'a'.repeat(40) }), fields: { token: req(TOKEN) } },
  { method: 'POST', path: '/v1/auth/unlock', valid: () => ({ token: 'a'.repeat(40) }), fields: { token: req(TOKEN) } },
  { method: 'POST', path: '/v1/auth/mfa/verify', valid: () => ({ mfaToken: 'a'.repeat(40), totp: '123456' }), fields: { mfaToken: req(str(20, 128)), totp: str(0, 16), recoveryCode: str(0, 32), transport: { kind: 'enum', values: ['bearer', 'cookie'] }, webauthn: { kind: 'object' } } },
  { method: 'POST', path: '/v1/auth/passkey/options', valid: () => ({ mfaToken: 'a'.repeat(40) }), fields: { mfaToken: str(1, 128) } },
  { method: 'POST', path: '/v1/me/mfa/totp/confirm', valid: () => ({ code: '000000' }), fields: { code: req(str(1, 16)) }, token: ownerToken },
  { method: 'PATCH', path: '/v1/me/passkeys/{id}', valid: () => ({ name: 'key' }), fields: { name: req(str(1, 64)) }, token: ownerToken },
  { method: 'PATCH', path: '/v1/me', valid: () => ({ name: 'Owner' }), fields: { name: req(str(1, 100, { nullable: true })) }, token: ownerToken },
  { method: 'POST', path: '/v1/me/password', valid: () => ({ currentPassword: 'not the password', password: 'short' }), fields: { currentPassword: req(PASSWORD), password: req(PASSWORD) }, token: () => plain.accessToken },
  { method: 'POST', path: '/v1/me/reauthenticate', valid: () => ({ totp: '123456' }), fields: { password: PASSWORD, totp: str(6, 8, { pattern: '^[0-9]+$' }) }, token: () => plain.accessToken },
  { method: 'POST', path: '/v1/roles', valid: () => ({ name: `made-${++seq}`, level: 10, permissions: ['users:read'], description: 'd', mfaRequired: false }), fields: { name: req(ROLE_NAME), level: req(LEVEL), permissions: req(PERMISSIONS), description: str(0, 500), mfaRequired: { kind: 'boolean' } }, token: ownerToken },
  { method: 'PATCH', path: '/v1/roles/{name}', valid: () => ({ level: 21 }), fields: { name: ROLE_NAME, level: LEVEL, permissions: PERMISSIONS, description: str(0, 500), mfaRequired: { kind: 'boolean' } }, nonEmpty: true, token: ownerToken },
  { method: 'POST', path: '/v1/authz/check', valid: () => ({ userId: target.userId, permission: 'users:read', resourceOwnerId: target.userId }), fields: { userId: req(str(1, 64)), permission: req(str(3, 100)), resourceOwnerId: str(1, 64), token: str(1, 4096), checks: { kind: 'array', maxItems: 100, item: str(1, 1) } }, token: ownerToken },
  { method: 'POST', path: '/v1/permissions', valid: () => ({ name: `bounds${++seq}:read`, description: 'd' }), fields: { name: req(str(3, 65, { pattern: '^[a-z][a-z0-9_-]{0,31}:[a-z][a-z0-9_-]{0,31}$' })), description: str(0, 500) }, token: ownerToken },
  { method: 'POST', path: '/v1/me/api-keys', valid: () => ({ name: `key ${++seq}`, permissions: ['users:read'], expiresIn: '1d' }), fields: { name: req(str(1, 100)), permissions: PERMISSIONS, expiresIn: str(2, 8, { pattern: '^[1-9][0-9]{0,5}[mhd]$' }) }, token: ownerToken },
  { method: 'POST', path: '/v1/clients/{id}/secret', valid: () => ({ overlap: '24h' }), fields: { overlap: str(1, 16, { pattern: '^[0-9]+(ms|s|m|h|d)?$' }) }, token: ownerToken },
  { method: 'PATCH', path: '/v1/users/{id}', valid: () => ({ name: 'Target', status: 'active' }), fields: { name: str(1, 100, { nullable: true }), status: { kind: 'enum', values: ['active', 'disabled'] } }, nonEmpty: true, token: ownerToken },
  { method: 'POST', path: '/v1/webhooks', valid: () => ({ url: 'https://hooks.example.com/bounds', events: ['user.created'], description: 'd' }), fields: { url: req(str(8, 2048)), events: req({ kind: 'array', maxItems: 50, item: str(1, 64) }), description: str(0, 500) }, token: ownerToken },
  { method: 'PATCH', path: '/v1/webhooks/{id}', valid: () => ({ description: 'd' }), fields: { url: str(8, 2048), events: { kind: 'array', maxItems: 50, item: str(1, 64) }, description: str(0, 500), enabled: { kind: 'boolean' } }, nonEmpty: true, token: ownerToken },
  { method: 'POST', path: '/v1/webhooks/{id}/secret', valid: () => ({ overlap: '24h' }), fields: { overlap: str(1, 16, { pattern: '^[0-9]{1,9}(ms|s|m|h|d)?$' }) }, token: ownerToken },
]

/** Body routes not in the table, and why (their bad input is covered where the format is). */
const BODY_ELSEWHERE: Record<string, string> = {
  'POST /v1/me/passkeys': 'a WebAuthn attestation object: test/modules/mfa (software authenticator)',
  'POST /v1/auth/passkey/verify': 'a WebAuthn assertion object: test/modules/mfa (software authenticator)',
  'POST /v1/files': 'multipart upload: test/modules/files.test.ts',
  'PUT /v1/me/avatar': 'multipart upload: test/modules/files.test.ts',
  'POST /v1/clients': 'a JWKS object field (no kind here): test/modules/oauth.test.ts',
  'PATCH /v1/clients/{id}': 'a JWKS object field (no kind here): test/modules/oauth.test.ts',
  'POST /oauth/token': 'form-urlencoded, answered in the RFC 6749 §5.2 shape: test/modules/oauth.test.ts, test/binary/oauth.test.ts',
  'POST /oauth/introspect': 'form-urlencoded, answered in the RFC 6749 §5.2 shape: test/modules/oauth.test.ts, test/binary/oauth.test.ts',
  'POST /oauth/revoke': 'form-urlencoded, answered in the RFC 6749 §5.2 shape: test/modules/oauth.test.ts, test/binary/oauth.test.ts',
}

// ------------------------------------------------------------------ cases

interface Case {
  name: string
  method: string
  path: string
  body?: string
  token?: string
  /** The field the problem document must name (a JSON pointer prefix); undefined: any. */
  field?: string
  /** Send a one-file multipart body instead (the upload routes). */
  multipart?: boolean
}

/** A 1×1 PNG: a file every upload route accepts. */
const PNG = Uint8Array.from(atob('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='), (c) => c.charCodeAt(0))

const bodyText = (base: Record<string, unknown>, field?: string, value?: unknown): string => {
  if (field === undefined) return JSON.stringify(base)
  if (value instanceof Raw) return JSON.stringify({ ...base, [field]: '\u0000RAW\u0000' }).replace('"\\u0000RAW\\u0000"', value.text)
  return JSON.stringify({ ...base, [field]: value })
}

const bodyCases: Case[] = BODY_ROUTES.flatMap((r) => {
  const path = fill(r.path)
  const token = r.token?.()
  const out: Case[] = []
  for (const [field, kind] of Object.entries(r.fields)) {
    for (const v of badValues(kind, false)) out.push({ name: `${r.method} ${r.path} ${field}=${label(v)}`, method: r.method, path, token, body: bodyText(r.valid(), field, v), field: `/${field}` })
    if (kind.required) {
      const { [field]: _, ...rest } = r.valid()
      out.push({ name: `${r.method} ${r.path} without ${field}`, method: r.method, path, token, body: JSON.stringify(rest), field: `/${field}` })
    }
  }
  out.push({ name: `${r.method} ${r.path} unknown field`, method: r.method, path, token, body: bodyText(r.valid(), 'zzUnknown', 1), field: '/zzUnknown' })
  for (const root of ['[]', '"text"', '5', 'null']) out.push({ name: `${r.method} ${r.path} body ${root}`, method: r.method, path, token, body: root })
  if (r.nonEmpty) out.push({ name: `${r.method} ${r.path} body {}`, method: r.method, path, token, body: '{}' })
  return out
})

interface QueryParam {
  route: string
  method: string
  path: string
  name: string
  kind: Kind
}

const operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([m, op]) => ({ method: m.toUpperCase(), path, op })))
const queryParams: QueryParam[] = operations.flatMap(({ method, path, op }) =>
  (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => ({ route: `${method} ${path}`, method, path, name: p.name, kind: kindOfSchema(p.schema, `${method} ${path} ?${p.name}`) })),
)
/** Date filters are strings in the schema and dates to the handler: their own bad values. */
const EXTRA_QUERY_BAD: Record<string, string[]> = { since: ['2020-13-45', 'yesterday', '20200101'], until: ['2020-13-45', 'yesterday', '20200101'] }

/** Accepted values where the schema alone does not say (dates are strings to the schema). */
const GOOD_QUERY: Record<string, string> = { since: '2020-01-01', until: '2030-01-01T00:00:00Z', head: `01a23123-f1ab-76d5-aca7-9bb47ddf3e87:1:${'a'.repeat(64)}` }
const goodQuery = (p: QueryParam) => GOOD_QUERY[p.name] ?? goodValue(p.kind)

const q = (name: string, v: unknown) => `${encodeURIComponent(name)}=${encodeURIComponent(String(v))}`
const queryCases: Case[] = queryParams.flatMap((p) => {
  const path = fill(p.path)
  const bad = [...badValues(p.kind, true), ...(EXTRA_QUERY_BAD[p.name] ?? [])]
  const good = goodQuery(p)
  return [
    ...bad.map((v) => ({ name: `${p.route} ?${p.name}=${label(v)}`, method: p.method, path: `${path}?${q(p.name, v)}`, token: owner.accessToken, field: `/${p.name}` })),
    { name: `${p.route} ?${p.name} twice`, method: p.method, path: `${path}?${q(p.name, good)}&${q(p.name, good)}`, token: owner.accessToken, field: `/${p.name}` },
    { name: `${p.route} ?${p.name} without a value`, method: p.method, path: `${path}?${encodeURIComponent(p.name)}`, token: owner.accessToken, field: p.kind.kind === 'string' && p.kind.min === 0 ? 'skip' : `/${p.name}` },
  ].filter((c) => c.field !== 'skip')
})
// An unknown parameter on every operation, with or without declared ones. The plain user's token and
// random ids: the check runs before authentication, and a missed one could not touch anything real.
const validBodyOf = (method: string, path: string) => BODY_ROUTES.find((r) => r.method === method && r.path === path)?.valid()
const unknownCases: Case[] = operations.map(({ method, path }) => {
  const body = validBodyOf(method, path)
  const multipart = BODY_ELSEWHERE[`${method} ${path}`]?.startsWith('multipart')
  return { name: `${method} ${path} ?zz_unknown=1`, method, path: `${inert(path)}?zz_unknown=1`, token: plain.accessToken, body: body && JSON.stringify(body), field: '/zz_unknown', multipart }
})

// Path parameters: too long, and not a UUID where the schema says so (the other parameters inert).
const pathCases: Case[] = operations.flatMap(({ method, path, op }) =>
  (op.parameters ?? [])
    .filter((p) => p.in === 'path')
    .flatMap((p) => {
      const k = kindOfSchema(p.schema, `${method} ${path} {${p.name}}`)
      if (k.kind !== 'string') throw new Error(`${method} ${path} {${p.name}}: a path parameter that is not a string`)
      const bad = [...(Number.isFinite(k.max) ? [a(k.max + 1)] : []), ...(k.format === 'uuid' ? ['not-a-uuid'] : [])]
      const body = validBodyOf(method, path)
      return bad.map((v) => ({ name: `${method} ${path} {${p.name}}=${label(v)}`, method, path: inert(path, { [p.name]: encodeURIComponent(v) }), token: owner.accessToken, body: body && JSON.stringify(body), field: `/${p.name}` }))
    }),
)

async function send(c: Case) {
  if (!c.multipart) return call(bin.base, c.method, c.path, { token: c.token, body: c.body })
  const form = new FormData()
  form.append('file', new Blob([PNG], { type: 'image/png' }), 'dot.png')
  const r = await fetch(`${bin.base}${c.path}`, { method: c.method, body: form, headers: { authorization: `Bearer ${c.token}` } })
  const text = await r.text()
  return { status: r.status, headers: r.headers, text, json: JSON.parse(text) }
}

function expectRefused(c: Case, r: Awaited<ReturnType<typeof send>>) {
  const paths: string[] = r.json?.errors?.map((e: { path: string }) => e.path) ?? []
  const got = { status: r.status, type: r.headers.get('content-type'), code: r.json?.code, names: c.field === undefined || paths.some((p) => p === c.field || p.startsWith(`${c.field}/`)) }
  expect(got, `${c.name}: ${r.text.slice(0, 300)}`).toEqual({ status: 422, type: 'application/problem+json; charset=utf-8', code: 'validation_failed', names: true })
}

// ------------------------------------------------------------------ tests

describe('coverage of the route list', () => {
  test('every operation with a JSON body is in the body table or said to be covered elsewhere', () => {
    const withBody = operations.filter(({ op }) => op.requestBody).map(({ method, path }) => `${method} ${path}`)
    const known = new Set([...BODY_ROUTES.map((r) => `${r.method} ${r.path}`), ...Object.keys(BODY_ELSEWHERE)])
    expect(withBody.filter((k) => !known.has(k))).toEqual([])
    expect([...known].filter((k) => !withBody.includes(k))).toEqual([])
  })
  test('the body table has the fields the document lists (once the document describes bodies)', () => {
    for (const r of BODY_ROUTES) {
      const props = operations.find((o) => o.method === r.method && o.path === r.path)?.op.requestBody?.content['application/json']?.schema?.properties
      if (props) expect(Object.keys(r.fields).sort(), `${r.method} ${r.path}`).toEqual(Object.keys(props).sort())
    }
  })
  test('every paginated route (a `limit` query parameter) has the documented 1–100 bounds', () => {
    const paginated = queryParams.filter((p) => p.name === 'limit')
    expect(paginated.map((p) => p.route).sort()).toEqual(['GET /v1/api-keys', 'GET /v1/audit', 'GET /v1/clients', 'GET /v1/files', 'GET /v1/me/api-keys', 'GET /v1/me/events', 'GET /v1/users', 'GET /v1/webhooks/{id}/deliveries'])
    for (const p of paginated) expect(p.kind, p.route).toEqual({ kind: 'integer', min: 1, max: 100 })
  })
})

const before = await rowCounts(bin.workdir)
const targetBefore = (({ name, status, roles }) => ({ name, status, roles }))((await call(bin.base, 'GET', `/v1/users/${target.userId}`, { token: owner.accessToken })).json)
const ownerBefore = (({ name, roles }) => ({ name, roles }))((await call(bin.base, 'GET', '/v1/me', { token: owner.accessToken })).json)

describe('bad query values are 422 validation_failed naming the parameter', () => {
  test.each(queryCases.map((c) => [c.name, c]))('%s', async (_n, c) => expectRefused(c, await send(c)))
})

describe('an unknown query parameter is 422 on every route', () => {
  test.each(unknownCases.map((c) => [c.name, c]))('%s', async (_n, c) => expectRefused(c, await send(c)))
})

describe('bad path parameters are 422 validation_failed naming the parameter', () => {
  test.each(pathCases.map((c) => [c.name, c]))('%s', async (_n, c) => expectRefused(c, await send(c)))
})

describe('bad body values are 422 validation_failed naming the field', () => {
  test.each(bodyCases.map((c) => [c.name, c]))('%s', async (_n, c) => expectRefused(c, await send(c)))
})

describe('afterwards', () => {
  test('none of the refused requests wrote a row (users, roles, sessions, every table) beyond their own bounded refusal events', async () => {
    expect(queryCases.length + unknownCases.length + pathCases.length + bodyCases.length).toBeGreaterThan(300)
    const { security_events: eventsAfter, ...after } = await rowCounts(bin.workdir)
    const { security_events: eventsBefore, ...rest } = before
    expect(after).toEqual(rest)
    // The only rows a refusal may add are its security events (request_rejected & co.), at most 10 per type
    // per source per minute (BULWARK_AUDIT_DENIALS_PER_SOURCE) plus one summary each: never one per request.
    const added = await dbRows<{ type: string; n: number }>(bin.workdir, 'SELECT type, count(*) AS n FROM security_events WHERE id > (SELECT coalesce(max(id), 0) FROM (SELECT id FROM security_events ORDER BY id LIMIT ?) AS firsts) GROUP BY type', [eventsBefore!])
    expect(added.map((a) => a.type).filter((t) => !['request_rejected', 'token_rejected', 'access_denied', 'security_events_suppressed'].includes(t))).toEqual([])
    expect(eventsAfter! - eventsBefore!).toBeLessThan(100)
  })

  test('nothing was changed in place either: the role, the target user, the owner', async () => {
    const r = await call(bin.base, 'GET', '/v1/roles', { token: owner.accessToken })
    expect(r.json.items.find((x: { name: string }) => x.name === 'bounds-role')).toMatchObject({ level: 20, permissions: [], description: '', mfaRequired: false })
    expect((await call(bin.base, 'GET', `/v1/users/${target.userId}`, { token: owner.accessToken })).json).toMatchObject(targetBefore)
    expect((await call(bin.base, 'GET', '/v1/me', { token: owner.accessToken })).json).toMatchObject(ownerBefore)
  })

  // Controls: the valid input of each row passes validation, so each bad case above differs from an accepted one in one field.
  test.each(BODY_ROUTES.map((r) => [`${r.method} ${r.path}`, r]))('control: %s with its valid body is not a validation failure', async (_n, r) => {
    const res = await call(bin.base, r.method, fill(r.path), { token: r.token?.(), body: r.valid() })
    expect({ status: res.status, code: res.json?.code }, res.text.slice(0, 300)).not.toMatchObject({ code: 'validation_failed' })
    expect(res.status).toBeLessThan(500)
  })

  test.each(queryParams.map((p) => [`${p.route} ?${p.name}`, p]))('control: %s with a good value is not a validation failure', async (_n, p) => {
    const res = await call(bin.base, p.method, `${fill(p.path)}?${q(p.name, goodQuery(p))}`, { token: owner.accessToken })
    expect(res.json?.code, res.text.slice(0, 300)).not.toBe('validation_failed')
    expect(res.status).toBeLessThan(500)
  })

  test('limit=1 and limit=100 are honoured on every paginated route; the cursor continues the list', async () => {
    // A list under a resource (a webhook's delivery log) needs one that exists.
    const hook = await call(bin.base, 'POST', '/v1/webhooks', { token: owner.accessToken, body: { url: 'https://hooks.example.com/pages', events: ['*'] } })
    expect(hook.status).toBe(201)
    for (const p0 of queryParams.filter((x) => x.name === 'limit')) {
      const p = { ...p0, path: p0.path.replace('{id}', hook.json.id) }
      const one = await call(bin.base, 'GET', `${p.path}?limit=1`, { token: owner.accessToken })
      expect(one.status, p.route).toBe(200)
      expect(one.json.items.length, p.route).toBeLessThanOrEqual(1)
      const all = await call(bin.base, 'GET', `${p.path}?limit=100`, { token: owner.accessToken })
      expect(all.status, p.route).toBe(200)
      if (one.json.nextCursor) {
        const next = await call(bin.base, 'GET', `${p.path}?limit=1&cursor=${encodeURIComponent(one.json.nextCursor)}`, { token: owner.accessToken })
        expect(next.status, p.route).toBe(200)
        expect(next.json.items[0], p.route).toEqual(all.json.items[1])
      }
    }
  })
})
