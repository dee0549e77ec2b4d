/**
 * The development profile: a developer's scripts register, reset and sign in many times from one IP,
 * and an overrun costs at most a minute; the test profile keeps the production limits.
 */
import { describe, expect, test } from 'bun:test'
import { makeApp, STRONG_PASSWORD, uniqueEmail } from '../helpers'

const register = (a: Awaited<ReturnType<typeof makeApp>>) => a.req('POST', '/v1/auth/register', { body: { email: uniqueEmail(), password: STRONG_PASSWORD } })

describe('rate limits by profile', () => {
  test('development: four runs of a script that registers three users each all succeed; test refuses the sixth', async () => {
    const dev = await makeApp({ BULWARK_ENV: 'development' })
    const strict = await makeApp({ BULWARK_ENV: 'test' })
    try {
      const devCodes: number[] = []
      const testCodes: number[] = []
      for (let i = 0; i < 12; i++) {
        devCodes.push((await register(dev)).status)
        testCodes.push((await register(strict)).status)
      }
      expect(devCodes).toEqual(Array(12).fill(201))
      expect(testCodes.slice(0, 5)).toEqual(Array(5).fill(201))
      expect(testCodes[5]).toBe(429)
    } finally {
      await dev.close()
      await strict.close()
    }
  })

  test('development: repeated overruns are blocked for a minute at most, never escalated to hours', async () => {
    const a = await makeApp({ BULWARK_ENV: 'development', BULWARK_RATE_LIMIT_ROUTES: 'register-ip=2/1m' })
    try {
      for (let round = 0; round < 4; round++) {
        const codes = [(await register(a)).status, (await register(a)).status]
        expect(codes).toEqual([201, 201])
        const refused = await register(a)
        expect(refused.status).toBe(429)
        expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(60)
        a.clock.advance(61_000)
      }
    } finally {
      await a.close()
    }
  })
})
