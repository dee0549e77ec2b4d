/**
 * Regression (fault injection): a hung clamd made the first uploads wait the full scan deadline (10 s) and
 * wrote two log lines per 503. Now a scan first needs PONG within BULWARK_CLAMD_CONNECT_TIMEOUT, the first
 * timeout opens the breaker, uploads fail fast while it is open (no call reaches clamd), and the log gets
 * one line per state change.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expectProblem, makeApp, signUp, type TestApp } from '../helpers'
import { FakeClamd } from '../support/fake-clamd'

let a: TestApp | undefined
let clamd: FakeClamd | undefined
afterEach(() => {
  a?.close()
  clamd?.stop()
})

const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64')
const form = () => {
  const f = new FormData()
  f.append('file', new File([new Uint8Array(PNG)], 'a.png', { type: 'image/png' }))
  return f
}

describe('scanner circuit breaker against a hung clamd', () => {
  test('the first timeout opens the breaker; later uploads fail fast; one log line per state change; recovery closes it', async () => {
    clamd = new FakeClamd()
    a = await makeApp({ BULWARK_DATA_DIR: mkdtempSync(join(tmpdir(), 'bw-scan-')), BULWARK_CLAMD: clamd.address, BULWARK_CLAMD_CONNECT_TIMEOUT: '100ms' })
    const { accessToken: token } = await signUp(a)
    const upload = () => a!.req('POST', '/v1/files', { token, raw: form() })
    const appLines = () => a!.logs.filter((l) => l.msg !== 'request' && l.msg !== 'security event')
    const transitions = () => appLines().filter((l) => l.msg === 'scanner circuit breaker changed state').map((l) => `${l.from}->${l.to}`)
    const before = appLines().length

    expectProblem(await upload(), 503, 'scanner_unavailable')
    expect(clamd.connections).toBe(1)
    expect(clamd.commands).toEqual(['PING']) // the short PING deadline caught the hang, not the scan deadline
    expect(a.deps.files.breaker.state).toBe('open')
    for (let i = 0; i < 5; i++) expectProblem(await upload(), 503, 'scanner_unavailable')
    expect(clamd.connections).toBe(1) // open: no call reached clamd
    expect(transitions()).toEqual(['closed->open'])
    expect(appLines().length - before).toBe(1) // nothing else per 503: no "request failed", no "scan failed"
    expect(String(appLines().at(-1)!.err)).toContain('did not answer PING')

    // After the cool-down one probe goes through; still hung, so it opens again.
    a.clock.advance(5_000)
    expectProblem(await upload(), 503, 'scanner_unavailable')
    expect(clamd.connections).toBe(2)
    expectProblem(await upload(), 503, 'scanner_unavailable')
    expect(clamd.connections).toBe(2)
    expect(transitions()).toEqual(['closed->open', 'open->half-open', 'half-open->open'])

    // clamd recovers: the next probe closes the breaker and uploads are scanned again.
    clamd.mode = 'ok'
    a.clock.advance(5_000)
    expect((await upload()).status).toBe(201)
    expect((await upload()).status).toBe(201)
    expect(clamd.commands).toEqual(['PING', 'PING', 'PING', 'INSTREAM', 'PING', 'INSTREAM'])
    expect(transitions()).toEqual(['closed->open', 'open->half-open', 'half-open->open', 'open->half-open', 'half-open->closed'])
    expect(appLines().length - before).toBe(5)
  })
})
