import { describe, expect, test } from 'bun:test'
import { CircuitBreaker, type BreakerState } from '../../src/lib/circuit-breaker'
import { FakeClock } from '../../src/lib/clock'

function setup(threshold = 3, coolDownMs = 5000) {
  const clock = new FakeClock()
  const changes: [BreakerState, BreakerState][] = []
  const b = new CircuitBreaker({ name: 't', clock, failureThreshold: threshold, coolDownMs, onStateChange: (to, from) => changes.push([from, to]) })
  return { clock, b, changes }
}

const fail = () => Promise.reject(new Error('down'))
const ok = () => Promise.resolve('primary')
const fb = () => 'fallback'

describe('circuit breaker', () => {
  test('stays closed below the threshold and opens at it', async () => {
    const { b, changes } = setup(3)
    expect(await b.run(fail, fb)).toBe('fallback')
    expect(await b.run(fail, fb)).toBe('fallback')
    expect(b.state).toBe('closed')
    expect(await b.run(fail, fb)).toBe('fallback')
    expect(b.state).toBe('open')
    expect(changes).toEqual([['closed', 'open']])
  })

  test('a success resets the consecutive-failure count', async () => {
    const { b } = setup(2)
    await b.run(fail, fb)
    await b.run(ok, fb)
    await b.run(fail, fb)
    expect(b.state).toBe('closed')
  })

  test('while open the primary is not called at all', async () => {
    const { b } = setup(1)
    await b.run(fail, fb)
    let calls = 0
    const counted = () => {
      calls++
      return Promise.resolve('primary')
    }
    expect(await b.run(counted, fb)).toBe('fallback')
    expect(calls).toBe(0)
  })

  test('after the cool-down one probe is let through; success closes', async () => {
    const { b, clock, changes } = setup(1, 1000)
    await b.run(fail, fb)
    clock.advance(999)
    expect(b.state).toBe('open')
    clock.advance(1)
    expect(b.state).toBe('half-open')
    expect(await b.run(ok, fb)).toBe('primary')
    expect(b.state).toBe('closed')
    expect(changes).toEqual([
      ['closed', 'open'],
      ['open', 'half-open'],
      ['half-open', 'closed'],
    ])
  })

  test('a failed probe opens the breaker for another cool-down', async () => {
    const { b, clock } = setup(1, 1000)
    await b.run(fail, fb)
    clock.advance(1000)
    expect(await b.run(fail, fb)).toBe('fallback')
    expect(b.state).toBe('open')
    clock.advance(500)
    expect(b.allow()).toBe(false)
    clock.advance(500)
    expect(b.allow()).toBe(true)
  })

  test('half-open admits only one probe at a time', async () => {
    const { b, clock } = setup(1, 1000)
    await b.run(fail, fb)
    clock.advance(1000)
    expect(b.allow()).toBe(true)
    expect(b.allow()).toBe(false)
    b.success()
    expect(b.allow()).toBe(true)
  })

  test('a throwing listener does not break the caller', async () => {
    const b = new CircuitBreaker({ name: 't', clock: new FakeClock(), failureThreshold: 1, onStateChange: () => { throw new Error('listener bug') } })
    expect(await b.run(fail, fb)).toBe('fallback')
    expect(b.state).toBe('open')
  })

  test('tripOn: a recognised failure (a timeout) opens at once; others still count to the threshold', async () => {
    const clock = new FakeClock()
    const changes: string[] = []
    class Timeout extends Error {}
    const b = new CircuitBreaker({ name: 't', clock, failureThreshold: 3, tripOn: (e) => e instanceof Timeout, onStateChange: (to, from) => changes.push(`${from}->${to}`) })
    await b.run(fail, fb)
    expect(b.state).toBe('closed')
    await b.run(() => Promise.reject(new Timeout('slow')), fb)
    expect(b.state).toBe('open')
    expect(changes).toEqual(['closed->open'])
  })
})
