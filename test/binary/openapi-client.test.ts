/**
 * The served OpenAPI document is the product's interface, so it is held to what off-the-shelf tools do
 * with it: openapi-typescript generates types from the binary's live /docs/json (never committed),
 * tsc type-checks a small openapi-fetch client written against them, and that client signs up, signs
 * in, reads /v1/me and signs out against the compiled binary. Redocly's linter passes on the same document.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import openapiTS, { astToString } from 'openapi-typescript'
import { ROOT, startBinary, type Running } from './harness'

// Under node_modules so that the generated files resolve openapi-fetch like any file of the project.
const WORK = join(ROOT, 'node_modules', '.cache', `bulwark-openapi-client-${process.pid}`)

const CLIENT = `import createClient from 'openapi-fetch'
import type { components, paths } from './schema'

type Problem = components['schemas']['Problem']

/** Register → login → GET /v1/me → logout through the typed client; returns what it saw. */
export async function flow(baseUrl: string, email: string, password: string) {
  const client = createClient<paths>({ baseUrl })
  const reg = await client.POST('/v1/auth/register', { body: { email, password, name: 'Typed Client' } })
  if (!reg.data) throw new Error('register: ' + reg.response.status)
  const userId: string = reg.data.user.id

  const login = await client.POST('/v1/auth/login', { body: { email, password } })
  if (!login.data) throw new Error('login: ' + login.response.status)
  if ('mfaRequired' in login.data) throw new Error('unexpected MFA step')
  const token: string = login.data.accessToken
  const auth = { authorization: 'Bearer ' + token }

  const me = await client.GET('/v1/me', { headers: auth })
  if (!me.data) throw new Error('me: ' + me.response.status)
  const seen: { email: string; roles: string[]; totp: boolean } = { email: me.data.email, roles: me.data.roles, totp: me.data.mfa.totp }

  const out = await client.POST('/v1/auth/logout', { headers: auth })
  const after = await client.GET('/v1/me', { headers: auth })
  const problem: Problem | undefined = after.error
  const wrong = await client.POST('/v1/auth/login', { body: { email, password: password + '!' } })
  const code: Problem['code'] | undefined = wrong.error?.code

  return { userId, seen, logoutStatus: out.response.status, afterStatus: after.response.status, afterCode: problem?.code, wrongCode: code }
}

export function typeErrorsAreCaught(client: ReturnType<typeof createClient<paths>>) {
  // @ts-expect-error a path the document does not have
  void client.GET('/v1/no-such-route')
  // @ts-expect-error register needs a password
  void client.POST('/v1/auth/register', { body: { email: 'a@example.com' } })
  // @ts-expect-error transport is "bearer" or "cookie"
  void client.POST('/v1/auth/login', { body: { email: 'a@example.com', password: 'x', transport: 'carrier-pigeon' } })
  const bad: components['schemas']['Problem']['code'] = 'validation_failed'
  // @ts-expect-error a problem code outside the registry
  const typo: components['schemas']['Problem']['code'] = 'validation_faild'
  return [bad, typo]
}
`

describe('the served OpenAPI document with real tools', () => {
  let bin: Running
  let doc: Record<string, unknown>
  beforeAll(async () => {
    bin = await startBinary()
    const r = await fetch(`${bin.base}/docs/json`)
    expect(r.status).toBe(200)
    doc = (await r.json()) as Record<string, unknown>
    mkdirSync(WORK, { recursive: true })
  }, 120_000)
  afterAll(async () => {
    await bin?.stop()
    rmSync(WORK, { recursive: true, force: true })
  })

  test('openapi-typescript types + openapi-fetch: the client type-checks and runs register → login → me → logout', async () => {
    const types = astToString(await openapiTS(doc as never))
    await Bun.write(join(WORK, 'schema.ts'), types)
    await Bun.write(join(WORK, 'client.ts'), CLIENT)
    const tsc = Bun.spawn(
      [
        join(ROOT, 'node_modules', '.bin', 'tsc'),
        '--noEmit', '--strict', '--skipLibCheck', '--exactOptionalPropertyTypes',
        '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler', '--types', 'bun',
        join(WORK, 'client.ts'),
      ],
      { cwd: ROOT, stdout: 'pipe', stderr: 'pipe' },
    )
    const [code, out] = await Promise.all([tsc.exited, new Response(tsc.stdout).text()])
    expect(out).toBe('')
    expect(code).toBe(0)

    const { flow } = (await import(join(WORK, 'client.ts'))) as { flow: (b: string, e: string, p: string) => Promise<Record<string, any>> }
    const r = await flow(bin.base, 'typed-client@example.com', 'typed client passphrase 42')
    expect(r.userId).toMatch(/^[0-9a-f-]{36}$/)
    expect(r.seen).toEqual({ email: 'typed-client@example.com', roles: ['user'], totp: false })
    expect(r.logoutStatus).toBe(204)
    expect(r.afterStatus).toBe(401)
    expect(r.afterCode).toBe('invalid_token')
    expect(r.wrongCode).toBe('invalid_credentials')
  }, 60_000)

  test('redocly lint passes on the served document with no errors', async () => {
    const file = join(WORK, 'openapi.json')
    await Bun.write(file, JSON.stringify(doc))
    const p = Bun.spawn([process.execPath, join(ROOT, 'node_modules', '@redocly', 'cli', 'bin', 'cli.js'), 'lint', file, '--format', 'json'], {
      cwd: WORK,
      env: { PATH: process.env.PATH ?? '', HOME: WORK, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
      stdout: 'pipe',
      stderr: 'pipe',
    })
    const [code, out] = await Promise.all([p.exited, new Response(p.stdout).text()])
    const report = JSON.parse(out) as { totals: { errors: number }; problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[] }
    const errors = report.problems.filter((x) => x.severity === 'error').map((x) => `${x.ruleId} ${x.location[0]?.pointer}: ${x.message}`)
    expect(errors).toEqual([])
    expect(report.totals.errors).toBe(0)
    expect(code).toBe(0)
  }, 60_000)
})
