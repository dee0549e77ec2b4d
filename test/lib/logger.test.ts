import { describe, expect, test } from 'bun:test'
import { buildDeps, createApp, createHandler } from '../../src/app'
import { testConfig } from '../../src/config'
import { CENSOR, createLogger, droppedLines, LogSink, redact, type WriteFn } from '../../src/lib/logger'
import { parseProm, valueOf } from '../support/prom'

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 })

/** An output that fails (ENOSPC) while `failing` is true, else records what it got. */
function flakyOutput() {
  const state = { failing: true, written: '' }
  const out: WriteFn = (chunk, cb) => {
    setTimeout(() => {
      if (state.failing) return cb(enospc())
      state.written += chunk
      cb(null, Buffer.byteLength(chunk))
    }, 0)
  }
  return { state, out }
}

const settle = (sink: LogSink) => new Promise<void>((r) => sink.flush(() => r()))

describe('log sink', () => {
  test('a failing output drops and counts lines without throwing, and logging resumes when the output works again', async () => {
    const { state, out } = flakyOutput()
    const sink = new LogSink(out)
    const log = createLogger('info', sink)
    for (let i = 0; i < 20; i++) log.info({ i }, 'while the disk is full')
    await settle(sink)
    expect(sink.dropped).toBe(20)
    expect(droppedLines(log)).toBe(20)
    expect(sink.lastError).toBe('ENOSPC')
    expect(state.written).toBe('')

    state.failing = false
    for (let i = 0; i < 5; i++) log.info({ i }, 'space is back')
    await settle(sink)
    const lines = state.written.trim().split('\n').map((l) => JSON.parse(l))
    expect(lines.map((l) => l.i)).toEqual([0, 1, 2, 3, 4])
    expect(lines.every((l) => l.msg === 'space is back')).toBe(true)
    expect(sink.dropped).toBe(20)
    expect(sink.lastError).toBeUndefined()
  })

  test('an output that never answers cannot grow memory: past the bound, lines are dropped and counted', async () => {
    const sink = new LogSink(() => {}, 1000) // a write that never calls back (a stuck pipe)
    const log = createLogger('info', sink)
    for (let i = 0; i < 100; i++) log.info({ i }, 'x'.repeat(50))
    expect(sink.dropped).toBeGreaterThan(80)
  })

  test('a write that throws synchronously is a dropped line, not an exception', async () => {
    const sink = new LogSink(() => {
      throw enospc()
    })
    const log = createLogger('info', sink)
    expect(() => log.info('hello')).not.toThrow()
    await settle(sink)
    expect(sink.dropped).toBe(1)
  })

  test('/metrics reports bulwark_log_lines_dropped_total of the app logger', async () => {
    const { state, out } = flakyOutput()
    const sink = new LogSink(out)
    const deps = await buildDeps(testConfig(), { logger: createLogger('info', sink) })
    try {
      const handle = createHandler(createApp(deps), deps)
      for (let i = 0; i < 7; i++) await handle(new Request('http://localhost/health/live'))
      await settle(sink)
      state.failing = false
      const text = await (await handle(new Request('http://localhost/metrics'))).text()
      expect(text).toContain('# TYPE bulwark_log_lines_dropped_total counter')
      expect(valueOf(parseProm(text), 'bulwark_log_lines_dropped_total')).toBe(7)
    } finally {
      await deps.close()
    }
  })
})

describe('redaction', () => {
  test('credential keys are censored at any depth, in arrays, whatever their spelling', () => {
    let deep: Record<string, unknown> = { password: 'p-deep', keep: 'visible' }
    for (let i = 0; i < 12; i++) deep = { level: i, nested: deep }
    const input = {
      deep,
      list: [{ a: [{ refresh_token: 'r1' }, { 'X-CSRF-Token': 'c1' }] }],
      headers: { Authorization: 'Bearer abc', Cookie: 'sid=1', 'user-agent': 'ua' },
      body: { email: 'e@example.com', newPassword: 'np', currentPassword: 'cp', recoveryCodes: ['rc-1', 'rc-2'], totp: '123456', otpauthUrl: 'otpauth://totp/x?secret=S' },
      apiKeySecret: 'k',
      accessTokenHash: 'not-a-credential-suffix-but-kept',
    }
    const out = JSON.stringify(redact(input))
    for (const secret of ['p-deep', 'r1', 'c1', 'Bearer abc', 'sid=1', '"np"', '"cp"', 'rc-1', '123456', 'secret=S', '"k"']) expect(out).not.toContain(secret)
    expect(out).toContain('visible')
    expect(out).toContain('e@example.com')
    expect(out).toContain('"user-agent":"ua"')
    expect(out).toContain(CENSOR)
    // The input is not modified.
    expect(input.headers.Authorization).toBe('Bearer abc')
  })

  test('errors keep their stack and class; their credential fields are censored; cycles do not loop', () => {
    const err = Object.assign(new Error('boom'), { token: 't-secret', code: 'ENOENT' })
    const cyclic: Record<string, unknown> = { password: 'cyc' }
    cyclic.self = cyclic
    const lines: string[] = []
    const log = createLogger('info', { write: (s: string) => void lines.push(s) })
    log.error({ err, cyclic }, 'failed')
    const line = JSON.parse(lines[0]!)
    expect(line.err.message).toBe('boom')
    expect(line.err.stack).toContain('Error: boom')
    expect(line.err.code).toBe('ENOENT')
    expect(lines[0]).not.toContain('t-secret')
    expect(lines[0]).not.toContain('cyc"')
  })
})

describe('log sink at exit', () => {
  test('lines still queued when the process exits are written synchronously', async () => {
    const script = `import { createLogger } from ${JSON.stringify(`${import.meta.dir}/../../src/lib/logger.ts`)}
const log = createLogger('info')
for (let i = 0; i < 500; i++) log.info({ i }, 'queued before exit')
process.exit(3)`
    const p = Bun.spawn(['bun', '-e', script], { stdout: 'pipe', stderr: 'pipe' })
    const [code, out] = await Promise.all([p.exited, new Response(p.stdout).text()])
    expect(code).toBe(3)
    const lines = out.trim().split('\n').map((l) => JSON.parse(l))
    expect(lines.length).toBeGreaterThanOrEqual(499) // all but, at most, the one write in flight at exit
    expect(lines.at(-1).i).toBe(499)
  }, 30_000)
})
