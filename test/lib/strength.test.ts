// The password scorer's worker thread (src/lib/strength.ts, src/strength-worker.ts): real workers, the real
// dictionaries. Each test uses its own scorer; the idle times are short so the worker's end is observable.
import { afterEach, describe, expect, test } from 'bun:test'
import { MAX_WORKER_FAILURES, PasswordScorer } from '../../src/lib/strength'
import { createLogger } from '../../src/lib/logger'

const WORKER = new URL('../../src/strength-worker.ts', import.meta.url).href
const scorers: PasswordScorer[] = []
afterEach(() => {
  for (const s of scorers.splice(0)) s.close()
})

function scorer(opts: { workerUrl?: string; idleMs?: number; timeoutMs?: number; lines?: string[] } = {}): PasswordScorer {
  const lines = opts.lines ?? []
  const logger = createLogger('warn', { write: (l: string) => void lines.push(l) })
  const s = new PasswordScorer({ workerUrl: 'workerUrl' in opts ? opts.workerUrl : WORKER, idleMs: opts.idleMs ?? 60_000, timeoutMs: opts.timeoutMs, logger })
  scorers.push(s)
  return s
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms
  while (!cond() && Date.now() < end) await Bun.sleep(10)
  return cond()
}

const SAMPLES: [string, string[]][] = [
  ['password1234', []],
  ['Tr0ub4dour&3', []],
  ['correct horse battery staple', []],
  ['alice.smith2024!', ['alice.smith@example.com', 'alice', 'smith']],
  ['qwertyuiopasdf', []],
  ['zG#8v!Lq2@pW7x', []],
  ['aaaaaaaaaaaa', []],
  ['blue42house', []],
  ['Summer2024!x', []],
]

describe('PasswordScorer', () => {
  test('the worker scores exactly what zxcvbn on this thread scores, warnings included', async () => {
    const w = scorer()
    const inline = scorer({ workerUrl: undefined })
    for (const [pw, words] of SAMPLES) expect(await w.check(pw, words)).toEqual(await inline.check(pw, words))
    expect(w.mode).toBe('worker')
    expect(w.loads).toBe(1)
    expect(inline.mode).toBe('inline')
    expect(inline.loads).toBe(0)
    // The samples span the scale, so equal answers are not one constant.
    const scores = new Set(await Promise.all(SAMPLES.map(([pw, words]) => w.check(pw, words).then((s) => s.score))))
    expect(scores.size).toBe(5)
    expect((await w.check('password1234', [])).warning).not.toBe('')
    // Every answer came from the worker, none from the fallback.
    expect(w.fallbacks).toBe(0)
    expect(w.failures).toBe(0)
  })

  test('concurrent scores are answered each with its own result', async () => {
    const w = scorer()
    const got = await Promise.all([...SAMPLES, ...SAMPLES].map(([pw, words]) => w.check(pw, words)))
    const inline = scorer({ workerUrl: undefined })
    const want = await Promise.all([...SAMPLES, ...SAMPLES].map(([pw, words]) => inline.check(pw, words)))
    expect(got).toEqual(want)
    expect(w.loads).toBe(1)
    expect(w.fallbacks).toBe(0)
  })

  test('the worker ends after the idle time without a score, and the next score starts a new one', async () => {
    const w = scorer({ idleMs: 150 })
    await w.check('correct horse battery staple', [])
    expect(w.loaded).toBe(true)
    expect(await until(() => !w.loaded)).toBe(true)
    expect(w.loads).toBe(1)
    expect((await w.check('password1234', [])).score).toBeLessThan(3)
    expect(w.loaded).toBe(true)
    expect(w.loads).toBe(2)
    expect(w.mode).toBe('worker')
  })

  test('scores keep the worker alive: it ends only after a quiet idle time', async () => {
    const w = scorer({ idleMs: 400 })
    for (let i = 0; i < 6; i++) {
      await w.check(`correct horse battery ${i}`, [])
      await Bun.sleep(150)
    }
    expect(w.loaded).toBe(true)
    expect(w.loads).toBe(1)
    expect(await until(() => !w.loaded)).toBe(true)
  })

  test('a worker that cannot start: the score is computed here, and after repeated failures scoring stays here', async () => {
    const lines: string[] = []
    const w = scorer({ workerUrl: new URL('./no-such-worker.ts', import.meta.url).href, lines })
    const inline = scorer({ workerUrl: undefined })
    for (let i = 0; i < MAX_WORKER_FAILURES; i++) {
      expect(w.mode).toBe('worker')
      expect(await w.check('Tr0ub4dour&3', [])).toEqual(await inline.check('Tr0ub4dour&3', []))
    }
    expect(w.mode).toBe('inline')
    expect(w.loaded).toBe(false)
    expect(lines.some((l) => l.includes('password scorer worker failed'))).toBe(true)
    expect(lines.some((l) => l.includes('from now on'))).toBe(true)
    // No secret reaches the log.
    expect(lines.join('\n')).not.toContain('Tr0ub4dour')
  })

  test('a worker that dies while scores are pending: they are answered here', async () => {
    const w = scorer()
    await w.check('warm up the worker please', [])
    const pending = Promise.all(SAMPLES.map(([pw, words]) => w.check(pw, words)))
    // Its thread ends under it (as when the thread crashes): terminate() fires the worker's close event.
    ;(w as unknown as { worker: Worker }).worker.terminate()
    const inline = scorer({ workerUrl: undefined })
    expect(await pending).toEqual(await Promise.all(SAMPLES.map(([pw, words]) => inline.check(pw, words))))
    expect(w.failures).toBe(1)
    expect(w.mode).toBe('worker')
    // The next score starts a fresh worker, and a success resets the failure count.
    await w.check('correct horse battery staple', [])
    expect(w.loads).toBe(2)
    expect(w.failures).toBe(0)
  })

  test('a worker that does not answer in time: the score is computed here', async () => {
    const w = scorer({ timeoutMs: 1 })
    const inline = scorer({ workerUrl: undefined })
    // Its first answer needs the dictionaries loaded (~100-300 ms): far past 1 ms.
    expect(await w.check('Tr0ub4dour&3', [])).toEqual(await inline.check('Tr0ub4dour&3', []))
    expect(w.failures).toBe(1)
    expect(w.loaded).toBe(false)
  })

  test('a worker that runs but cannot score: the score is computed here, counted, and the worker ended as failed', async () => {
    const lines: string[] = []
    const w = scorer({ workerUrl: new URL('../support/unscoring-worker.ts', import.meta.url).href, lines })
    const inline = scorer({ workerUrl: undefined })
    expect(await w.check('Tr0ub4dour&3', [])).toEqual(await inline.check('Tr0ub4dour&3', []))
    expect(w.fallbacks).toBe(1)
    expect(w.failures).toBe(1)
    expect(w.loaded).toBe(false)
    expect(lines.some((l) => l.includes('dictionaries failed to load'))).toBe(true)
    for (let i = 1; i < MAX_WORKER_FAILURES; i++) await w.check('Tr0ub4dour&3', [])
    expect(w.mode).toBe('inline')
  })

  test('a busy worker is kept: only the scores that waited too long are computed here', async () => {
    const w = scorer()
    await w.check('warm up the worker please', [])
    // The dictionaries are loaded (that first answer took longer than 150 ms); from now on 150 ms.
    ;(w as unknown as { opts: { timeoutMs: number } }).opts.timeoutMs = 150
    // ~10 ms a score in the worker: the first answers arrive long before 150 ms, the last ones after it.
    const pws = Array.from({ length: 100 }, (_, i) => `correct horse ${i} battery`)
    const got = await Promise.all(pws.map((pw) => w.check(pw, [])))
    const inline = scorer({ workerUrl: undefined })
    expect(got).toEqual(await Promise.all(pws.map((pw) => inline.check(pw, []))))
    expect(w.fallbacks).toBeGreaterThan(0)
    expect(w.fallbacks).toBeLessThan(100)
    expect(w.failures).toBe(0)
    expect(w.loaded).toBe(true)
    expect(w.loads).toBe(1)
  })

  test('close with scores pending: they are answered here, and nothing waits on the ended worker', async () => {
    const w = scorer()
    // The first score waits for the dictionaries to load in the worker (~100-300 ms): close comes first.
    const pending = Promise.all(SAMPLES.map(([pw, words]) => w.check(pw, words)))
    w.close()
    const inline = scorer({ workerUrl: undefined })
    expect(await pending).toEqual(await Promise.all(SAMPLES.map(([pw, words]) => inline.check(pw, words))))
    expect(w.fallbacks).toBe(SAMPLES.length)
    expect(w.failures).toBe(0)
    expect(w.loaded).toBe(false)
  })

  test('after close, scores run here and no worker is started', async () => {
    const w = scorer()
    await w.check('correct horse battery staple', [])
    w.close()
    expect(w.loaded).toBe(false)
    expect((await w.check('password1234', [])).score).toBeLessThan(3)
    expect(w.loads).toBe(1)
  })
})
