/**
 * Schema-driven fuzzing of the compiled binary from its own OpenAPI document (/docs/json).
 *
 * For every operation, fast-check generates requests from the documented schemas of the path, query
 * and body: valid values, and values outside a declared bound (min-1, max+1, wrong types, fractions,
 * overlong strings, missing required fields, extra properties, values off a pattern or enum). Whether a
 * request is in or out of bounds is decided by a real JSON Schema validator (ajv, 2020-12) on the
 * document's schema, not by the mutation that made it. Each request is sent as one of three personas:
 * anonymous, an ordinary user, and the owner (`owner@example.com`, created by the harness) with TOTP
 * enrolled over the API and signed in through /v1/auth/mfa/verify.
 *
 * The run fails on: any 5xx; any 2xx for an out-of-bound input; any status the document does not list
 * for the operation; any response whose media type or body does not match the documented schema.
 *
 * BULWARK_FUZZ_SEED picks the seed (default: random; always printed), BULWARK_FUZZ_RUNS the number of
 * requests (default 2,000). The same seed generates the same request sequence.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020'
import addFormats from 'ajv-formats'
import fc from 'fast-check'
import * as OTPAuth from 'otpauth'
import { call, OWNER_EMAIL, OWNER_PASSWORD, signIn, startBinary, type Running } from './harness'

type Json = Record<string, any>

const SEED = process.env.BULWARK_FUZZ_SEED ? Number(process.env.BULWARK_FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31)
const RUNS = Number(process.env.BULWARK_FUZZ_RUNS ?? 2000)
const USER_EMAIL = 'fuzz-user@example.com'
const USER_PASSWORD = 'fuzz user passphrase 7391'
const VICTIM_PASSWORD = 'fuzz victim passphrase 5512'

/**
 * The fuzz run sends thousands of requests from one IP with many wrong passwords and codes on purpose,
 * so the defaults would answer nearly everything with 429 (and lock the owner out) and test nothing but
 * the limiter. Limits and lockout are raised, not switched off, so their code still runs on every
 * request; a wider TOTP window lets the owner sign in again several times within one 30 s step.
 */
const FUZZ_ENV: Record<string, string> = {
  BULWARK_RATE_LIMIT_ANON: '1000000',
  BULWARK_RATE_LIMIT_USER: '1000000',
  BULWARK_RATE_LIMIT_MODERATOR: '1000000',
  BULWARK_RATE_LIMIT_ADMIN: '1000000',
  BULWARK_RATE_LIMIT_ROUTES: ['login-ip', 'login-account', 'register-ip', 'forgot-ip', 'forgot-account', 'mfa-token', 'mfa-account', 'passkey-ip', 'authz-user']
    .map((n) => `${n}=1000000/1m`)
    .join(','),
  BULWARK_LOCKOUT_THRESHOLD: '1000',
  BULWARK_TOTP_WINDOW: '5',
}

/**
 * Operations the owner persona never sends, because they would end the owner's session or remove the
 * second factor the persona is about (each owner sign-in spends a TOTP step or a recovery code): they
 * are sent as the ordinary user instead, who signs in again whenever its token stops working.
 */
const NOT_AS_OWNER = new Set(['post /v1/auth/logout', 'post /v1/auth/logout-all', 'delete /v1/me/mfa/totp'])

/** A 1×1 PNG. */
const PNG = Uint8Array.from(atob('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='), (c) => c.charCodeAt(0))

type PersonaName = 'anonymous' | 'user' | 'owner'

interface Persona {
  name: PersonaName
  email?: string
  password?: string
  token?: string
  userId?: string
  dead?: boolean
  logins: number
}

interface Op {
  method: string
  path: string
  op: Json
  key: string
  params: Json[]
  query: Json[]
  body?: { type: 'json' | 'multipart'; schema: Json; required: boolean }
}

interface Req {
  persona: PersonaName
  key: string
  method: string
  path: string
  query: Record<string, string>
  body?: { json: unknown } | { multipart: Record<string, 'png' | 'junk' | string> } | undefined
  /** What the generator tried to break (for the report). */
  mutation: string
}

// ------------------------------------------------------------------ schema → fast-check arbitraries

const WORDS = ['a', 'é', '🔐', ' ', '\u0000', "'", '"', '<x>', '../', '%00', '\\', 'null']

/** Characters of a simple `^[...]*$`-style pattern, so long strings can be generated directly. */
function charClassOf(pattern: string): string[] | undefined {
  const m = /^\^\[([^\]]+)\][*+](?:=\{0,2\})?\$$/.exec(pattern)
  if (!m) return undefined
  const out: string[] = []
  const body = m[1]!
  for (let i = 0; i < body.length; i++) {
    if (body[i + 1] === '-' && i + 2 < body.length) {
      for (let c = body.charCodeAt(i); c <= body.charCodeAt(i + 2); c++) out.push(String.fromCharCode(c))
      i += 2
    } else out.push(body[i] === '\\' ? body[++i]! : body[i]!)
  }
  return out
}

class Gen {
  constructor(
    private readonly doc: Json,
    private readonly hints: { ids: string[]; emails: string[]; passwords: string[]; roles: string[]; permissions: string[] },
  ) {}

  deref(s: Json): Json {
    if (!s?.$ref) return s
    return this.doc.components.schemas[s.$ref.split('/').pop()]
  }

  string(s: Json, name: string): fc.Arbitrary<string> {
    const min = s.minLength ?? 0
    const max = s.maxLength ?? Math.max(min, 64)
    const cap = Math.min(max, Math.max(min, 48))
    if (s.format === 'uuid') return fc.oneof(fc.uuid(), fc.constantFrom(...this.hints.ids))
    if (s.format === 'integer' || s.format === 'numeric') return fc.integer({ min: s.minimum ?? -5, max: s.maximum ?? 200 }).map(String)
    if (s.format === 'date-time') return fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }).map((d) => d.toISOString())
    const n = name.toLowerCase()
    const fits = (x: string) => x.length >= min && x.length <= max
    // Only constants that fit the bounds: a filter that can never pass would loop forever.
    const consts = (xs: string[]) => {
      const ok = xs.filter(fits)
      return ok.length ? [fc.constantFrom(...ok)] : []
    }
    const hinted: fc.Arbitrary<string>[] = []
    if (n.includes('email')) hinted.push(...consts(this.hints.emails), fc.integer({ min: 0, max: 1e6 }).map((i) => `fuzz-${i}@example.com`))
    if (n.includes('password')) hinted.push(...consts([...this.hints.passwords, 'Fuzz generated passphrase 4417']))
    if (n === 'role' || n === 'reassign' || (n === 'name' && s.pattern)) hinted.push(...consts(this.hints.roles))
    if (n.includes('permission')) hinted.push(...consts(this.hints.permissions))
    if (n === 'userid' || n === 'resourceownerid') hinted.push(...consts(this.hints.ids))
    if (n === 'since' || n === 'until') hinted.push(fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }).map((d) => d.toISOString()))
    let base: fc.Arbitrary<string>
    if (s.pattern) {
      const chars = charClassOf(s.pattern)
      base = chars ? fc.string({ unit: fc.constantFrom(...chars), minLength: min, maxLength: cap }) : fc.stringMatching(new RegExp(s.pattern)).map((x) => x.slice(0, max))
    } else {
      base = fc.oneof(fc.string({ minLength: min, maxLength: cap }), fc.string({ unit: 'grapheme', minLength: min, maxLength: cap }), ...consts(WORDS))
    }
    return hinted.length ? fc.oneof(...hinted, base) : base
  }

  /** Values the schema accepts (mostly: pattern and format corners are left to the validator). */
  valid(schema: Json, name = ''): fc.Arbitrary<unknown> {
    const s = this.deref(schema)
    if (!s || Object.keys(s).length === 0) return fc.constant('x')
    if (s.const !== undefined) return fc.constant(s.const)
    if (s.enum) return fc.constantFrom(...s.enum)
    if (s.anyOf || s.oneOf) {
      const { anyOf, oneOf, ...parent } = s
      return fc.oneof(...(anyOf ?? oneOf).map((b: Json) => this.valid({ ...parent, ...this.deref(b) }, name)))
    }
    const types: string[] = Array.isArray(s.type) ? s.type : [s.type ?? (s.properties ? 'object' : 'string')]
    if (types.length > 1) return fc.oneof(...types.map((t) => this.valid({ ...s, type: t }, name)))
    switch (types[0]) {
      case 'string':
        return this.string(s, name)
      case 'integer': {
        const all = fc.integer({ min: s.minimum ?? -1000, max: s.maximum ?? 1000 })
        // Role levels below the owner's (100), or every role change would be refused before it is tried.
        return name === 'level' ? fc.oneof(fc.constantFrom(10, 20, 40, 60, 80), all) : all
      }
      case 'number':
        return fc.oneof(fc.integer({ min: s.minimum ?? -1000, max: s.maximum ?? 1000 }))
      case 'boolean':
        return fc.boolean()
      case 'null':
        return fc.constant(null)
      case 'array':
        return fc.array(this.valid(s.items ?? {}, name), { minLength: s.minItems ?? 0, maxLength: Math.min(s.maxItems ?? 3, Math.max(3, s.minItems ?? 0)) })
      case 'object': {
        const props = Object.entries<Json>(s.properties ?? {})
        return fc.record(Object.fromEntries(props.map(([k, v]) => [k, this.valid(v, k)])), { requiredKeys: s.required ?? [] })
      }
      default:
        return fc.constant('x')
    }
  }

  /** Values meant to break one declared bound; `stringly` for path and query values (always strings). */
  invalid(schema: Json, name = '', stringly = false): fc.Arbitrary<{ value: unknown; why: string }> {
    const s = this.deref(schema)
    const out: fc.Arbitrary<{ value: unknown; why: string }>[] = []
    const tag = (why: string) => (value: unknown) => ({ value, why: `${name || 'body'}: ${why}` })
    const wrongType = (...values: unknown[]) => {
      if (!stringly) out.push(...values.map((v) => fc.constant(v).map(tag(`wrong type ${JSON.stringify(v)}`))))
    }
    const bounds = s.anyOf ? { ...s, ...this.deref(s.anyOf.find((b: Json) => b.type && b.type !== 'string') ?? {}) } : s
    const types: string[] = Array.isArray(bounds.type) ? bounds.type : [bounds.type ?? (bounds.properties ? 'object' : 'string')]
    const t = types.find((x) => x !== 'null') ?? 'string'
    if (s.enum || s.const !== undefined) out.push(fc.constant(`not-${String(s.enum?.[0] ?? s.const)}`).map(tag('not in enum')))
    if (t === 'string' && !s.enum && s.const === undefined) {
      if (s.maxLength !== undefined) out.push(fc.constant('a'.repeat(s.maxLength + 1)).map(tag('maxLength + 1')), fc.constant('a'.repeat(Math.min(s.maxLength * 4 + 10, 20_000))).map(tag('overlong')))
      if (s.minLength) out.push(fc.constant('a'.repeat(s.minLength - 1)).map(tag('minLength - 1')))
      if (s.pattern) out.push(fc.constant('!#$ '.repeat(Math.max(1, Math.ceil((s.minLength ?? 1) / 4)))).map(tag('off pattern')))
      if (s.format === 'uuid') out.push(fc.constant('not-a-uuid').map(tag('not a uuid')))
      wrongType(42, true, { x: 1 }, [])
    }
    if (t === 'integer' || t === 'number') {
      const fmt = stringly ? String : (x: number) => x
      if (bounds.maximum !== undefined) out.push(fc.constant(fmt(bounds.maximum + 1)).map(tag('maximum + 1')))
      if (bounds.minimum !== undefined) out.push(fc.constant(fmt(bounds.minimum - 1)).map(tag('minimum - 1')))
      if (t === 'integer' || bounds.multipleOf === 1) out.push(fc.constant(fmt((bounds.minimum ?? 0) + 0.5)).map(tag('fraction')))
      if (stringly) out.push(fc.constantFrom('abc', '1e400', '').map(tag('not a number')))
      // A JSON string holding an in-range number is still the wrong type for a number field.
      wrongType('many', true, null, [1], String(bounds.minimum ?? 0), ` ${bounds.maximum ?? 1}`)
    }
    if (t === 'boolean') {
      if (stringly) out.push(fc.constant('perhaps').map(tag('not a boolean')))
      wrongType('yes', 1, null)
    }
    if (t === 'array') {
      if (s.maxItems !== undefined) out.push(fc.array(this.valid(s.items ?? {}), { minLength: s.maxItems + 1, maxLength: s.maxItems + 1 }).map(tag('maxItems + 1')))
      if (s.items) out.push(this.invalid(s.items, `${name}[]`).map(({ value, why }) => ({ value: [value], why })))
      wrongType('x', { x: 1 })
    }
    if (t === 'object') {
      const props = Object.entries<Json>(s.properties ?? {})
      for (const req of s.required ?? []) {
        out.push(this.valid(s).map((v) => {
          const o = { ...(v as Json) }
          delete o[req]
          return { value: o, why: `${name || 'body'}: missing required ${req}` }
        }))
      }
      if (s.additionalProperties === false) out.push(this.valid(s).map((v) => ({ value: { ...(v as Json), fuzzExtra: 1 }, why: `${name || 'body'}: extra property` })))
      for (const [k, ps] of props) {
        out.push(fc.tuple(this.valid(s), this.invalid(ps, k)).map(([v, bad]) => ({ value: { ...(v as Json), [k]: bad.value }, why: bad.why })))
      }
      wrongType('x', [], 7)
    }
    if (out.length === 0) return fc.constant({ value: stringly ? '' : Symbol.for('none'), why: 'no bound to break' })
    return fc.oneof(...out)
  }
}

// ------------------------------------------------------------------ the run

describe('schema-driven fuzzing of the binary', () => {
  let bin: Running
  let doc: Json
  const personas: Record<PersonaName, Persona> = { anonymous: { name: 'anonymous', logins: 0 }, user: { name: 'user', logins: 0 }, owner: { name: 'owner', logins: 0 } }
  let totp: OTPAuth.TOTP
  let recoveryCodes: string[] = []
  let lastStep = 0
  const victims: string[] = []

  /** The owner signs in with password + a TOTP step never used before (or a recovery code). */
  async function ownerLogin(): Promise<void> {
    const p = personas.owner
    const r = await call(bin.base, 'POST', '/v1/auth/login', { body: { email: OWNER_EMAIL, password: p.password } })
    if (r.status !== 200 || !r.json.mfaRequired) throw new Error(`owner login: ${r.status} ${r.text}`)
    const now = Math.floor(Date.now() / 1000 / totp.period)
    const step = Math.max(lastStep + 1, now - 4)
    let proof: Json
    if (step <= now + 4) {
      lastStep = step
      proof = { totp: totp.generate({ timestamp: step * totp.period * 1000 }) }
    } else {
      const code = recoveryCodes.shift()
      if (!code) throw new Error('owner: no TOTP step or recovery code left')
      proof = { recoveryCode: code }
    }
    const v = await call(bin.base, 'POST', '/v1/auth/mfa/verify', { body: { mfaToken: r.json.mfaToken, ...proof } })
    if (v.status !== 200) throw new Error(`owner mfa/verify: ${v.status} ${v.text}`)
    p.token = v.json.accessToken
    p.dead = false
    p.logins++
    // A sequence that ends the owner's session often would otherwise run out of sign-ins (4 TOTP steps ahead of
    // the enrolment's and one more per 30 s, then the codes): while the sign-in is fresh, take 10 new codes.
    if (recoveryCodes.length < 5) {
      const fresh = await call(bin.base, 'POST', '/v1/me/mfa/recovery-codes', { token: p.token })
      if (fresh.status !== 200) throw new Error(`owner recovery codes: ${fresh.status} ${fresh.text}`)
      recoveryCodes = [...fresh.json.recoveryCodes]
    }
  }

  async function userLogin(): Promise<void> {
    const p = personas.user
    const s = await signIn(bin.base, USER_EMAIL, p.password!)
    p.token = s.accessToken
    p.userId = s.userId
    p.dead = false
    p.logins++
  }

  beforeAll(async () => {
    bin = await startBinary({ env: FUZZ_ENV })
    doc = (await call(bin.base, 'GET', '/docs/json')).json
    // The owner: enrol TOTP over the API, then sign in through the MFA step.
    const owner = await signIn(bin.base, OWNER_EMAIL, OWNER_PASSWORD)
    Object.assign(personas.owner, { email: OWNER_EMAIL, password: OWNER_PASSWORD, userId: owner.userId })
    const enrol = await call(bin.base, 'POST', '/v1/me/mfa/totp', { token: owner.accessToken })
    expect(enrol.status).toBe(200)
    totp = OTPAuth.URI.parse(enrol.json.otpauthUrl) as OTPAuth.TOTP
    lastStep = Math.floor(Date.now() / 1000 / totp.period)
    const confirm = await call(bin.base, 'POST', '/v1/me/mfa/totp/confirm', { token: owner.accessToken, body: { code: totp.generate({ timestamp: lastStep * totp.period * 1000 }) } })
    expect(confirm.status).toBe(200)
    recoveryCodes = [...confirm.json.recoveryCodes]
    await ownerLogin()
    const me = await call(bin.base, 'GET', '/v1/me', { token: personas.owner.token })
    expect(me.json.mfa.totp).toBe(true)
    expect(me.json.roles).toContain('owner')
    Object.assign(personas.user, { email: USER_EMAIL, password: USER_PASSWORD })
    await call(bin.base, 'POST', '/v1/auth/register', { body: { email: USER_EMAIL, password: USER_PASSWORD } })
    await userLogin()
    // Accounts the owner may disable, re-role or delete, so the personas themselves stay usable.
    for (let i = 0; i < 3; i++) victims.push((await signIn(bin.base, `fuzz-victim-${i}@example.com`, VICTIM_PASSWORD, true)).userId)
  }, 120_000)

  afterAll(async () => {
    await bin?.stop()
  })

  test(`at least ${RUNS} generated requests: no 5xx, no out-of-bound accepted, only documented statuses and bodies`, async () => {
    console.log(`fuzz: seed ${SEED} (BULWARK_FUZZ_SEED=${SEED} reproduces the request sequence), ${RUNS} requests`)
    const ops: Op[] = []
    for (const [path, item] of Object.entries<Json>(doc.paths)) {
      for (const [method, op] of Object.entries<Json>(item)) {
        const params = (op.parameters ?? []) as Json[]
        const content = op.requestBody?.content ?? {}
        const media = Object.keys(content)[0]
        ops.push({
          method,
          path,
          op,
          key: `${method} ${path}`,
          params: params.filter((p) => p.in === 'path'),
          query: params.filter((p) => p.in === 'query'),
          body: media ? { type: media === 'multipart/form-data' ? 'multipart' : 'json', schema: content[media].schema, required: op.requestBody.required !== false } : undefined,
        })
      }
    }
    expect(ops.length).toBeGreaterThan(40)

    const gen = new Gen(doc, {
      ids: [...victims, personas.owner.userId!],
      emails: [OWNER_EMAIL, USER_EMAIL, 'fuzz-victim-0@example.com', 'nobody@example.com'],
      passwords: [OWNER_PASSWORD, USER_PASSWORD, 'wrong password 1234567'],
      roles: ['user', 'moderator', 'admin', 'owner', 'fuzzrole', 'no-such-role'],
      permissions: ['users:read', 'files:read', 'files:read:own', 'roles:*', 'nope:nope', '*:*'],
    })

    const asObject = (list: Json[]) => ({ type: 'object', properties: Object.fromEntries(list.map((p) => [p.name, p.schema])), required: list.filter((p) => p.required).map((p) => p.name) })
    const reqArb = (o: Op): fc.Arbitrary<Req> => {
      const paramsObj = asObject(o.params)
      const queryObj = asObject(o.query)
      const parts = [o.params.length ? 'params' : '', o.query.length ? 'query' : '', o.body ? 'body' : ''].filter(Boolean)
      const validQuery = fc.record(Object.fromEntries(o.query.map((q) => [q.name, gen.valid(q.schema, q.name).map(String)])), { requiredKeys: queryObj.required as never[] })
      const validParams = fc.record(Object.fromEntries(o.params.map((p) => [p.name, gen.valid(p.schema, p.name).map(String)])))
      const validBody: fc.Arbitrary<Req['body']> = !o.body
        ? fc.constant(undefined)
        : o.body.type === 'multipart'
          ? fc.constantFrom<Req['body']>({ multipart: { file: 'png' } }, { multipart: { file: 'junk' } })
          : fc.oneof(gen.valid(o.body.schema).map((json) => ({ json })), ...(o.body.required ? [] : [fc.constant(undefined)]))
      const persona = fc.constantFrom<PersonaName>('anonymous', 'user', 'owner').map((p) => (p === 'owner' && NOT_AS_OWNER.has(o.key) ? 'user' : p))
      const target = fc.constantFrom('valid', ...parts)
      return fc.tuple(persona, target, validParams, validQuery, validBody).chain(([who, part, params, query, body]) => {
        const done = (p: Json, q: Json, b: Req['body'], mutation: string): Req => ({
          persona: who,
          key: o.key,
          method: o.method.toUpperCase(),
          path: o.path.replace(/\{(\w+)\}/g, (_, n) => encodeURIComponent(String(p[n]))),
          query: Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)])),
          body: b,
          mutation,
        })
        if (part === 'params') {
          const p = o.params[0]!
          return gen.invalid(p.schema, p.name, true).map((bad) => done({ ...params, [p.name]: bad.value }, query, body, bad.why))
        }
        if (part === 'query') {
          return fc.constantFrom(...o.query).chain((q) => gen.invalid(q.schema, q.name, true).map((bad) => done(params, { ...query, [q.name]: bad.value }, body, bad.why)))
        }
        if (part === 'body' && o.body?.type === 'multipart') {
          return fc.constantFrom<[Req['body'], string]>([{ multipart: { other: 'x' } }, 'body: missing required file'], [{ multipart: { file: 'png', fuzzExtra: 'x' } }, 'body: extra property']).map(([b, why]) => done(params, query, b, why))
        }
        if (part === 'body') return gen.invalid(o.body!.schema).map((bad) => done(params, query, typeof bad.value === 'symbol' ? body : { json: bad.value }, bad.why))
        return fc.constant(done(params, query, body, 'none'))
      })
    }
    const requests = fc.sample(fc.constantFrom(...ops).chain(reqArb), { seed: SEED, numRuns: RUNS })

    // Validators: input bounds (ajv, with string coercion for path and query values) and response bodies.
    const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true })
    const ajvCoerce = new Ajv2020({ strict: false, coerceTypes: true, validateFormats: true })
    for (const a of [ajv, ajvCoerce]) {
      addFormats(a)
      a.addFormat('integer', /^-?\d+$/)
      a.addFormat('numeric', /^-?\d+(\.\d+)?$/)
      a.addSchema({ $id: 'bulwark:components', components: doc.components })
    }
    const cache = new Map<string, ValidateFunction>()
    const compile = (a: Ajv2020, key: string, schema: Json) => {
      let v = cache.get(key)
      if (!v) {
        const text = JSON.stringify(schema).replaceAll('"#/components/', '"bulwark:components#/components/')
        v = a.compile(JSON.parse(text))
        cache.set(key, v)
      }
      return v
    }
    const outOfBound = (o: Op, r: Req): boolean => {
      const raw = (o.path.match(/\{(\w+)\}/g) ?? []).map((m) => m.slice(1, -1))
      const segs = r.path.split('/')
      const tmpl = o.path.split('/')
      const params: Json = {}
      tmpl.forEach((t, i) => {
        if (t.startsWith('{')) params[t.slice(1, -1)] = decodeURIComponent(segs[i] ?? '')
      })
      if (raw.length && !compile(ajvCoerce, `${o.key} params`, asObject(o.params))({ ...params })) return true
      if (o.query.length && !compile(ajvCoerce, `${o.key} query`, asObject(o.query))({ ...r.query })) return true
      if (o.body?.type === 'json') {
        if (r.body === undefined) return o.body.required
        if (!compile(ajv, `${o.key} body`, o.body.schema)(structuredClone((r.body as { json: unknown }).json))) return true
      }
      if (o.body?.type === 'multipart') {
        const m = (r.body as { multipart: Json } | undefined)?.multipart ?? {}
        return !('file' in m) || Object.keys(m).some((k) => k !== 'file')
      }
      return false
    }

    const stats = { sent: 0, fiveXx: 0, acceptedOutOfBound: 0, undocumented: 0, badBody: 0, relogins: 0, byStatus: {} as Record<string, number>, invalidSent: 0, okBy: { anonymous: 0, user: 0, owner: 0 } as Record<PersonaName, number> }
    const failures: string[] = []
    const opOf = new Map(ops.map((o) => [o.key, o]))
    const started = performance.now()
    for (const r of requests) {
      const o = opOf.get(r.key)!
      const p = personas[r.persona]
      if (p.dead) {
        if (p.name === 'owner') await ownerLogin()
        else await userLogin()
        stats.relogins++
      }
      const headers: Record<string, string> = {}
      if (p.token) headers.authorization = `Bearer ${p.token}`
      let body: BodyInit | undefined
      if (r.body && 'json' in r.body) {
        headers['content-type'] = 'application/json'
        body = JSON.stringify(r.body.json)
      } else if (r.body && 'multipart' in r.body) {
        const form = new FormData()
        for (const [k, v] of Object.entries(r.body.multipart)) {
          if (v === 'png') form.append(k, new File([PNG], 'fuzz.png', { type: 'image/png' }))
          else if (v === 'junk') form.append(k, new File([new Uint8Array([1, 2, 3, 4, 5])], 'fuzz.png', { type: 'image/png' }))
          else form.append(k, v)
        }
        body = form
      }
      const qs = new URLSearchParams(r.query).toString()
      const url = `${bin.base}${r.path}${qs ? `?${qs}` : ''}`
      const res = await fetch(url, { method: r.method, headers, body, redirect: 'manual' })
      const text = await res.text()
      stats.sent++
      stats.byStatus[res.status] = (stats.byStatus[res.status] ?? 0) + 1
      if (res.status < 300) stats.okBy[r.persona]++
      const bad = outOfBound(o, r)
      if (bad) stats.invalidSent++
      const report = (kind: string, extra = '') =>
        failures.push(`${kind}: ${r.method} ${url} as ${r.persona} [mutation: ${r.mutation}] body=${JSON.stringify(r.body ?? null).slice(0, 300)} → ${res.status} ${text.slice(0, 300)} ${extra}`)
      if (res.status >= 500) {
        stats.fiveXx++
        report('5xx')
      }
      if (res.status >= 200 && res.status < 300 && bad) {
        stats.acceptedOutOfBound++
        report('accepted out of bounds')
      }
      const documented = o.op.responses?.[String(res.status)]
      if (!documented) {
        stats.undocumented++
        report('undocumented status')
      } else {
        const media = Object.keys(documented.content ?? {})[0]
        const got = (res.headers.get('content-type') ?? '').split(';')[0]!.trim()
        if (!media) {
          if (text !== '') {
            stats.badBody++
            report('body on a status documented without one')
          }
        } else if (media.endsWith('json')) {
          let json: unknown
          try {
            json = JSON.parse(text)
          } catch {
            json = Symbol.for('unparseable')
          }
          const v = compile(ajv, `${o.key} ${res.status} response`, documented.content[media].schema ?? {})
          if (got !== media || typeof json === 'symbol' || !v(json)) {
            stats.badBody++
            report('response does not match the document', `(media ${got}, documented ${media}; ${ajv.errorsText(v.errors)})`)
          }
        }
      }
      // Keep the personas alive: a session ended by the fuzz (logout, password change elsewhere) is replaced.
      if (p.name !== 'anonymous' && res.status === 401 && /"code":"(invalid_token|unauthorized)"/.test(text)) p.dead = true
      if (r.key === 'post /v1/me/password' && res.status === 204 && r.body && 'json' in r.body) p.password = (r.body.json as Json).password
      if (r.key === 'post /v1/me/mfa/recovery-codes' && res.status === 200 && p.name === 'owner') recoveryCodes = [...JSON.parse(text).recoveryCodes]
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1)
    console.log(
      `fuzz: seed ${SEED}: requests sent ${stats.sent} (${stats.invalidSent} out of bounds) in ${seconds} s; 5xx ${stats.fiveXx}; out-of-bound accepts ${stats.acceptedOutOfBound}; ` +
        `undocumented statuses ${stats.undocumented}; bodies off the document ${stats.badBody}; re-logins ${stats.relogins}; 2xx by persona ${JSON.stringify(stats.okBy)}; statuses ${JSON.stringify(stats.byStatus)}`,
    )
    if (failures.length) console.log(`fuzz: seed ${SEED}: ${failures.length} failures, the first ones:\n${failures.slice(0, 15).join('\n')}`)
    expect(stats.sent).toBeGreaterThanOrEqual(RUNS)
    expect(stats.invalidSent).toBeGreaterThan(RUNS / 4)
    // Each persona got somewhere: the owner's admin requests and the user's own requests succeeded at times.
    for (const who of ['anonymous', 'user', 'owner'] as const) expect(stats.okBy[who], `2xx answers to ${who}`).toBeGreaterThan(RUNS / 100)
    expect(failures).toEqual([])
  }, 180_000)
})
