import { describe, expect, test } from 'bun:test'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildDeps, createApp, createHandler } from '../../src/app'
import { testConfig } from '../../src/config'
import { accessLogger, CENSOR, createLogger, deferredInfo, droppedLines, LogSink, redact, type AccessLine, type WriteFn } from '../../src/lib/logger'
import { parseProm, valueOf } from '../support/prom'
import { testDatabaseEnv } from '../support/pg-apps'

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
    const db = await testDatabaseEnv()
    const deps = await buildDeps(testConfig(db.env), { logger: createLogger('info', sink) })
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
      await db.drop()
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

/** An output that records every write (one chunk per call). */
function recordingOutput() {
  const chunks: string[] = []
  const out: WriteFn = (chunk, cb) => {
    chunks.push(chunk)
    setTimeout(() => cb(null, Buffer.byteLength(chunk)), 0)
  }
  return { chunks, out }
}

const line = (i: number, status = 200): AccessLine => ({ method: 'GET', path: `/p/${i}`, route: '/p/:i', status, durationMs: 1.25, requestId: `req-${i}`, userId: undefined, ip: '203.0.113.9' })

describe('batched sink and deferred access log', () => {
  test('lines logged in one turn of the event loop go out in one write, in order, none lost', async () => {
    const { chunks, out } = recordingOutput()
    const sink = new LogSink(out)
    const log = createLogger('info', sink)
    for (let i = 0; i < 50; i++) log.info({ i }, 'batched')
    expect(chunks.length).toBe(0) // nothing written on the caller's path
    await settle(sink)
    expect(chunks.length).toBe(1)
    expect(chunks[0]!.trim().split('\n').map((l) => JSON.parse(l).i)).toEqual([...Array(50).keys()])
    expect(sink.dropped).toBe(0)
  })

  test('a quiet sink writes a line right after the current turn, without waiting for a batch interval', async () => {
    const { chunks, out } = recordingOutput()
    const sink = new LogSink(out)
    createLogger('info', sink).info('bulwark listening')
    expect(chunks.length).toBe(0)
    await new Promise((r) => setImmediate(r))
    expect(chunks.length).toBe(1)
    expect(JSON.parse(chunks[0]!).msg).toBe('bulwark listening')
  })

  test('the access line is formatted only when its batch is written, and is the JSON the logger itself writes', async () => {
    const { chunks, out } = recordingOutput()
    const sink = new LogSink(out)
    const log = createLogger('info', sink)
    const access = accessLogger(log)
    access(line(1))
    expect(chunks.length).toBe(0)
    log.info({ msg: 'request', ...line(2) })
    await settle(sink)
    const [fast, viaPino] = chunks.join('').trim().split('\n').map((l) => JSON.parse(l))
    expect(Object.keys(fast)).toEqual(Object.keys(viaPino))
    expect({ ...fast, time: 0, path: 0, requestId: 0 }).toEqual({ ...viaPino, time: 0, path: 0, requestId: 0 })
    expect(fast).toMatchObject({ level: 'info', service: 'bulwark', msg: 'request', method: 'GET', path: '/p/1', status: 200, requestId: 'req-1', ip: '203.0.113.9' })
    expect(Number.isNaN(Date.parse(fast.time))).toBe(false)
  })

  test('with a user id, no route and characters to escape, still the JSON the logger writes', async () => {
    const { chunks, out } = recordingOutput()
    const sink = new LogSink(out)
    const log = createLogger('info', sink)
    const odd: AccessLine = { ...line(5), route: undefined, userId: 'usr_1', path: '/a"b\\c\u2028é', requestId: 'r"1' }
    accessLogger(log)(odd)
    log.info({ msg: 'request', ...odd })
    await settle(sink)
    const [fast, viaPino] = chunks.join('').trim().split('\n').map((l) => JSON.parse(l))
    expect(Object.keys(fast)).toEqual(Object.keys(viaPino))
    expect({ ...fast, time: 0 }).toEqual({ ...viaPino, time: 0 })
    expect(fast.path).toBe(odd.path)
  })

  test('a deferred info line (the security-event line) is formatted with its batch, redacted, and is the JSON pino writes', async () => {
    const { chunks, out } = recordingOutput()
    const sink = new LogSink(out)
    const log = createLogger('info', sink)
    const fields = { event: 'refresh', outcome: 'success', actorId: 'usr_1', targetId: undefined, ip: '203.0.113.9', requestId: 'r"1', details: { sessionId: 's\u2028é', refreshToken: 'rt-secret', nested: { password: 'pw' } } }
    deferredInfo(log, 'security event')(fields)
    expect(chunks.length).toBe(0)
    log.info(fields, 'security event')
    await settle(sink)
    const [fast, viaPino] = chunks.join('').trim().split('\n').map((l) => JSON.parse(l))
    expect(Object.keys(fast)).toEqual(Object.keys(viaPino))
    expect({ ...fast, time: 0 }).toEqual({ ...viaPino, time: 0 })
    expect(fast.details).toEqual({ sessionId: 's\u2028é', refreshToken: CENSOR, nested: { password: CENSOR } })
    expect(chunks.join('')).not.toContain('rt-secret')
    expect(fast.msg).toBe('security event')
    // Below the level, nothing; to another destination, the logger itself at once.
    deferredInfo(createLogger('warn', sink), 'x')({ a: 1 })
    const lines: string[] = []
    deferredInfo(createLogger('info', { write: (l: string) => (lines.push(l), true) } as never), 'direct')({ a: 1 })
    expect(JSON.parse(lines[0]!)).toMatchObject({ a: 1, msg: 'direct' })
    await settle(sink)
    expect(chunks.join('').trim().split('\n').length).toBe(2)
  })

  test('a 5xx access line is written at level error; below the configured level nothing is queued', async () => {
    const { chunks, out } = recordingOutput()
    const sink = new LogSink(out)
    accessLogger(createLogger('info', sink))(line(3, 503))
    accessLogger(createLogger('warn', sink))(line(4))
    await settle(sink)
    const lines = chunks.join('').trim().split('\n').map((l) => JSON.parse(l))
    expect(lines.map((l) => [l.level, l.path])).toEqual([['error', '/p/3']])
  })

  test('10,000 access lines under load: all written, none dropped', async () => {
    const { chunks, out } = recordingOutput()
    const sink = new LogSink(out)
    const access = accessLogger(createLogger('info', sink))
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 1000; i++) access(line(round * 1000 + i))
      await new Promise((r) => setImmediate(r))
    }
    await settle(sink)
    const paths = chunks.join('').trim().split('\n').map((l) => JSON.parse(l).path)
    expect(paths.length).toBe(10_000)
    expect(paths.at(-1)).toBe('/p/9999')
    expect(sink.dropped).toBe(0)
  })

  test('deferred lines count against the bound and are dropped and counted past it', () => {
    const sink = new LogSink(() => {}, 1000)
    const access = accessLogger(createLogger('info', sink))
    for (let i = 0; i < 10; i++) access(line(i))
    expect(sink.dropped).toBe(10 - Math.floor(1000 / 256))
  })
})

describe('sink on a file descriptor', () => {
  test('a regular file gets every line, in batches', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-log-'))
    const fd = openSync(join(dir, 'out.log'), 'a')
    try {
      const sink = LogSink.fd(fd)
      const log = createLogger('info', sink)
      for (let i = 0; i < 300; i++) log.info({ i }, 'to a file')
      await settle(sink)
      const lines = readFileSync(join(dir, 'out.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
      expect(lines.map((l) => l.i)).toEqual([...Array(300).keys()])
      expect(sink.dropped).toBe(0)
    } finally {
      closeSync(fd)
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('/dev/full (every write ENOSPC): lines are dropped and counted, nothing throws', async () => {
    const fd = openSync('/dev/full', 'w')
    try {
      const sink = LogSink.fd(fd)
      const log = createLogger('info', sink)
      for (let i = 0; i < 10; i++) expect(() => log.info({ i }, 'nowhere to go')).not.toThrow()
      await settle(sink)
      expect(sink.dropped).toBe(10)
      expect(sink.lastError).toBe('ENOSPC')
    } finally {
      closeSync(fd)
    }
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
