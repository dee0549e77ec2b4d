/**
 * The compiled binary scores passwords in its worker thread (src/strength-worker.ts, a second entry point of the
 * build): the worker starts on demand, refuses weak passwords with zxcvbn's feedback, and ends after
 * BULWARK_PASSWORD_SCORER_IDLE. Had the build left the worker out, the scorer would fall back to the server's
 * thread and `bulwark_password_scorer_inline` would read 1.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { call, startBinary, type Running } from './harness'

setDefaultTimeout(120_000)

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const metric = (text: string, name: string) => text.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1]
const metrics = async (s: Running) => (await call(s.base, 'GET', '/metrics')).text
async function until(s: Running, name: string, value: string): Promise<string> {
  let text = ''
  for (let i = 0; i < 200; i++) {
    text = await metrics(s)
    if (metric(text, name) === value) break
    await Bun.sleep(25)
  }
  return text
}

describe('binary: the password scorer worker', () => {
  test('starts on demand, refuses a weak password with its feedback, accepts a strong one, and ends when idle', async () => {
    const s = await startBinary({ env: { BULWARK_SECRET: 'binary-scorer-test-secret-0123456789-abcdefghijklmnop', BULWARK_RATE_LIMIT: 'off', BULWARK_METRICS_PUBLIC: '1', BULWARK_PASSWORD_SCORER_IDLE: '300ms' } })
    cleanups.push(() => s.stop())
    // The owner created at start-up had its password scored; the worker then ends after 300 ms.
    let text = await until(s, 'bulwark_password_scorer_loaded', '0')
    expect(metric(text, 'bulwark_password_scorer_loaded')).toBe('0')
    expect(metric(text, 'bulwark_password_scorer_inline')).toBe('0')
    const loadsBefore = Number(metric(text, 'bulwark_password_scorer_loads_total'))

    const weak = await call(s.base, 'POST', '/v1/auth/register', { body: { email: 'weak@example.com', password: 'qwertyuiopasdf' } })
    expect(weak.status).toBe(422)
    expect(JSON.stringify(weak.json)).toContain('too_weak')
    expect(JSON.stringify(weak.json)).toContain('This is similar to a commonly used password.')
    text = await metrics(s)
    expect(metric(text, 'bulwark_password_scorer_loaded')).toBe('1')
    expect(Number(metric(text, 'bulwark_password_scorer_loads_total'))).toBe(loadsBefore + 1)

    const strong = await call(s.base, 'POST', '/v1/auth/register', { body: { email: 'strong@example.com', password: 'correct horse battery staple 42' } })
    expect(strong.status).toBe(201)
    text = await until(s, 'bulwark_password_scorer_loaded', '0')
    expect(metric(text, 'bulwark_password_scorer_loaded')).toBe('0')
    expect(Number(metric(text, 'bulwark_password_scorer_loads_total'))).toBe(loadsBefore + 1)
    expect(metric(text, 'bulwark_password_scorer_inline')).toBe('0')
    // Every score came from the worker: none was computed on the server's thread in its stead.
    expect(metric(text, 'bulwark_password_scorer_fallbacks_total')).toBe('0')
    expect(s.stdout()).not.toContain('password scorer')
  })

  test('BULWARK_PASSWORD_SCORER=inline scores on the server thread and starts no worker', async () => {
    const s = await startBinary({ env: { BULWARK_SECRET: 'binary-scorer-test-secret-0123456789-abcdefghijklmnop', BULWARK_RATE_LIMIT: 'off', BULWARK_METRICS_PUBLIC: '1', BULWARK_PASSWORD_SCORER: 'inline' } })
    cleanups.push(() => s.stop())
    const weak = await call(s.base, 'POST', '/v1/auth/register', { body: { email: 'weak@example.com', password: 'qwertyuiopasdf' } })
    expect(weak.status).toBe(422)
    expect(JSON.stringify(weak.json)).toContain('too_weak')
    const text = await metrics(s)
    expect(metric(text, 'bulwark_password_scorer_inline')).toBe('1')
    expect(metric(text, 'bulwark_password_scorer_loads_total')).toBe('0')
  })
})
