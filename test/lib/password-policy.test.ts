import { afterEach, describe, expect, test } from 'bun:test'
import { testConfig } from '../../src/config'
import { users } from '../../src/db/tables'
import { PasswordHistoryStore } from '../../src/modules/auth/password-history'
import { testDb } from '../support/pg-apps'
import { FakeClock } from '../../src/lib/clock'
import { createLogger } from '../../src/lib/logger'
import { PasswordHasher } from '../../src/lib/password'
import { COMMON_PASSWORDS, hibpDigest, isReused, PasswordPolicy, personalWords, type PasswordProblem } from '../../src/lib/password-policy'

const STRONG = 'violet tractor sings quietly'
const logger = createLogger('silent')

function policy(env: Record<string, string> = {}, extra: Partial<ConstructorParameters<typeof PasswordPolicy>[0]> = {}) {
  const config = testConfig(env)
  const hasher = new PasswordHasher(config.password)
  return { policy: new PasswordPolicy({ config, hasher, logger, ...extra }), hasher, config }
}

const codes = async (p: PasswordPolicy, pw: string, ctx = {}) => (await p.check(pw, ctx)).map((r) => r.code)

describe('length and characters', () => {
  const { policy: p } = policy()

  test('a long passphrase of lower-case words and spaces is accepted: no composition rules', async () => {
    expect(await p.check(STRONG)).toEqual([])
  })

  test('too short and too long, with a short human message', async () => {
    expect(await p.check('Xk9#mP2q!zR')).toEqual([{ code: 'too_short', message: 'Use at least 12 characters.' }])
    expect(await p.check('Xk9#mP2q!zR4')).toEqual([])
    expect(await codes(p, 'x'.repeat(129))).toEqual(['too_long'])
  })

  test('length is counted in code points after NFKC, not UTF-16 units', async () => {
    // 4 emoji are 8 UTF-16 units but 4 code points: 10 code points, 14 units
    expect(await codes(p, '🦊🐙🦉🐝 zebra')).toEqual(['too_short'])
    // the ligature U+FB03 is one code point before NFKC and "ffi" after: 10 + 3 = 13
    expect(await codes(p, 'Wq8#zRt!mK\ufb03')).toEqual([])
    expect(await codes(p, '🦊'.repeat(129))).toEqual(['too_long'])
    expect(await codes(p, `${'🦊🐙🦉🐝'.repeat(32)}`)).not.toContain('too_long')
  })

  test('the bounds follow the configuration', async () => {
    const { policy: q } = policy({ BULWARK_PASSWORD_MIN_LENGTH: '16', BULWARK_PASSWORD_MAX_LENGTH: '64' })
    expect(await q.check('Xk9#mP2q!zR4abc')).toEqual([{ code: 'too_short', message: 'Use at least 16 characters.' }])
    expect(await codes(q, 'Xk9#mP2q!zR4abcd')).toEqual([])
    expect(await codes(q, 'x'.repeat(65))).toEqual(['too_long'])
  })
})

describe('guessability', () => {
  const { policy: p } = policy()

  test('the shipped common-password list is embedded, large, and checked case-insensitively', async () => {
    expect(COMMON_PASSWORDS.size).toBeGreaterThanOrEqual(4000)
    expect(COMMON_PASSWORDS.has('leavemealone')).toBe(true)
    expect(await p.check('LeaveMeAlone')).toEqual([{ code: 'common', message: 'This is one of the most common passwords.' }])
    expect(await codes(p, '123QWEASDZXC')).toEqual(['common'])
  })

  test('a low zxcvbn score is refused with its feedback', async () => {
    const r = await p.check('aaaaaaaaaaaaaaaa')
    expect(r.map((x) => x.code)).toEqual(['too_weak'])
    expect(r[0]!.message).toStartWith('This password is too easy to guess')
    expect(await codes(p, 'qwertyuiop123456')).toEqual(['too_weak'])
  })

  test('the minimum score is configurable', async () => {
    const { policy: lax } = policy({ BULWARK_PASSWORD_MIN_SCORE: '0' })
    expect(await lax.check('aaaaaaaaaaaaaaaa')).toEqual([])
  })

  test('a password built from the email or name is refused; the same shape without them is accepted', async () => {
    const ctx = { email: 'alice.smith@example.com', name: 'Alice Wonderland' }
    expect(await codes(p, 'alice.smith2024!', ctx)).toContain('personal')
    expect(await codes(p, 'Wonderland#1987', ctx)).toContain('personal')
    expect(await codes(p, 'Wonderland#1987', {})).not.toContain('personal')
    expect(await codes(p, 'palace garden moonlight', ctx)).toEqual([])
  })

  test('personal words include the email, its local part and pieces, and the name parts', () => {
    expect(personalWords({ email: 'Jo.Ann+x@Example.com', name: 'Jo Ann Lee' })).toEqual(
      expect.arrayContaining(['jo.ann+x@example.com', 'jo.ann+x', 'jo', 'ann', 'x', 'jo ann lee', 'lee', 'bulwark']),
    )
  })
})

describe('reuse of previous passwords', () => {
  const handles: Array<{ close(): Promise<void> }> = []
  afterEach(async () => {
    for (const h of handles.splice(0)) await h.close()
  })

  async function withDb(env: Record<string, string> = {}) {
    const h = await testDb()
    handles.push(h)
    const clock = new FakeClock()
    const userId = Bun.randomUUIDv7()
    await h.db.insert(users).values({ id: userId, email: 'u@example.com', createdAt: clock.now(), updatedAt: clock.now() })
    return { ...policy(env, { history: new PasswordHistoryStore(h.db), clock }), userId, db: h.db }
  }

  test('isReused compares with every previous hash', async () => {
    const { hasher } = policy()
    const hashes = [await hasher.hash('first password one'), await hasher.hash('second password two')]
    expect(await isReused('second password two', hashes, hasher)).toBe(true)
    expect(await isReused('third password three', hashes, hasher)).toBe(false)
    expect(await isReused('anything at all', [], hasher)).toBe(false)
  })

  test('the last N (history) passwords are refused, older ones allowed again', async () => {
    const { policy: p, hasher, userId } = await withDb()
    const pws = ['amber falcon drifts west', 'cobalt meadow hums low', 'silver lantern rolls by', 'copper violin naps often', 'crimson glacier walks far', 'golden pebble sleeps deep']
    for (const pw of pws) await p.remember(userId, await hasher.hash(pw))
    expect(await p.previousHashes(userId)).toHaveLength(5)
    expect(await p.check(pws[5]!, { userId })).toEqual([{ code: 'reused', message: 'Choose a password you have not used for your last 5 changes.' }])
    expect(await codes(p, pws[1]!, { userId })).toEqual(['reused'])
    expect(await codes(p, pws[0]!, { userId })).toEqual([])
    // another account's history does not count
    expect(await codes(p, pws[5]!, { userId: Bun.randomUUIDv7() })).toEqual([])
  })

  test('history=0 stores and checks nothing', async () => {
    const { policy: p, hasher, userId } = await withDb({ BULWARK_PASSWORD_HISTORY: '0' })
    await p.remember(userId, await hasher.hash(STRONG))
    expect(await p.previousHashes(userId)).toEqual([])
    expect(await p.check(STRONG, { userId })).toEqual([])
  })
})

describe('Have I Been Pwned range check', () => {
  const BREACHED = 'pumpkin orchestra balloon'
  const servers: Array<ReturnType<typeof Bun.serve>> = []
  afterEach(() => servers.splice(0).forEach((s) => s.stop(true)))

  interface Seen {
    path: string
    padding: string | null
  }

  function fakeHibp(handler: (prefix: string) => Response | Promise<Response>) {
    const seen: Seen[] = []
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: (req) => {
        const url = new URL(req.url)
        seen.push({ path: url.pathname, padding: req.headers.get('add-padding') })
        return handler(url.pathname.split('/').pop()!)
      },
    })
    servers.push(server)
    return { seen, url: `http://127.0.0.1:${server.port}/range/` }
  }

  // A realistic padded answer: the breached suffix with a count, other suffixes, and padding rows (count 0).
  const rangeBody = (prefix: string, opts: { padSuffix?: string } = {}) => {
    const digest = hibpDigest(BREACHED)
    const lines = ['0018A45C4D1DEF81644B54AB7F969B88D65:3', '00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0']
    if (digest.startsWith(prefix)) lines.push(opts.padSuffix === undefined ? `${digest.slice(5)}:52` : `${opts.padSuffix}:0`)
    return new Response(lines.join('\r\n'))
  }

  test('sends only the 5-character SHA-1 prefix with Add-Padding, and refuses a breached password', async () => {
    const hibp = fakeHibp((prefix) => rangeBody(prefix))
    const { policy: p } = policy({ BULWARK_HIBP: 'on', BULWARK_HIBP_URL: hibp.url })
    expect(await p.check(BREACHED)).toEqual([{ code: 'breached', message: 'This password has appeared in a data breach; choose another.' }])
    const digest = hibpDigest(BREACHED)
    expect(hibp.seen).toEqual([{ path: `/range/${digest.slice(0, 5)}`, padding: 'true' }])
    expect(await p.check(STRONG)).toEqual([])
    expect(hibp.seen[1]!.path).toBe(`/range/${hibpDigest(STRONG).slice(0, 5)}`)
  })

  test('the digest is the upper-case SHA-1 of the NFKC password', () => {
    expect(hibpDigest('password')).toBe('5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8')
    expect(hibpDigest('cafe\u0301')).toBe(hibpDigest('caf\u00e9'))
  })

  test('a padding row (count 0) with the same suffix is not a breach', async () => {
    const hibp = fakeHibp((prefix) => rangeBody(prefix, { padSuffix: hibpDigest(BREACHED).slice(5) }))
    const { policy: p } = policy({ BULWARK_HIBP: 'on', BULWARK_HIBP_URL: hibp.url })
    expect(await p.check(BREACHED)).toEqual([])
  })

  test('nothing is sent when disabled, or when a local rule already refused the password', async () => {
    const hibp = fakeHibp((prefix) => rangeBody(prefix))
    expect(await policy({ BULWARK_HIBP_URL: hibp.url }).policy.check(BREACHED)).toEqual([])
    expect(await codes(policy({ BULWARK_HIBP: 'on', BULWARK_HIBP_URL: hibp.url }).policy, 'short')).toEqual(['too_short'])
    expect(hibp.seen).toEqual([])
  })

  for (const failure of ['open', 'closed'] as const) {
    const expected: PasswordProblem[] = failure === 'closed' ? [{ code: 'breach_check_unavailable', message: 'Breach check unavailable; try again later.' }] : []

    test(`fail ${failure}: an error answer`, async () => {
      const hibp = fakeHibp(() => new Response('busy', { status: 503 }))
      const { policy: p } = policy({ BULWARK_HIBP: 'on', BULWARK_HIBP_FAILURE: failure, BULWARK_HIBP_URL: hibp.url })
      expect(await p.check(BREACHED)).toEqual(expected)
      expect(hibp.seen).toHaveLength(1)
    })

    test(`fail ${failure}: no answer within the timeout`, async () => {
      let release = () => {}
      const hibp = fakeHibp(() => new Promise<Response>((resolve) => (release = () => resolve(new Response('')))))
      const { policy: p } = policy({ BULWARK_HIBP: 'on', BULWARK_HIBP_FAILURE: failure, BULWARK_HIBP_TIMEOUT: '100ms', BULWARK_HIBP_URL: hibp.url })
      expect(await p.check(BREACHED)).toEqual(expected)
      release()
    })

    test(`fail ${failure}: nothing listening`, async () => {
      const hibp = fakeHibp(() => new Response(''))
      servers.pop()!.stop(true)
      const { policy: p } = policy({ BULWARK_HIBP: 'on', BULWARK_HIBP_FAILURE: failure, BULWARK_HIBP_URL: hibp.url })
      expect(await p.check(BREACHED)).toEqual(expected)
    })
  }

  test('a failed check is logged without the password or its hash', async () => {
    const lines: string[] = []
    const sink = { write: (s: string) => lines.push(s) }
    const hibp = fakeHibp(() => new Response('', { status: 500 }))
    const config = testConfig({ BULWARK_HIBP: 'on', BULWARK_HIBP_URL: hibp.url })
    const p = new PasswordPolicy({ config, hasher: new PasswordHasher(config.password), logger: createLogger('info', sink) })
    await p.check(BREACHED)
    const all = lines.join('')
    expect(all).toContain('hibp check failed')
    expect(all).not.toContain(BREACHED)
    expect(all).not.toContain(hibpDigest(BREACHED).slice(0, 5))
  })
})
