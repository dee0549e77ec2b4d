import { afterEach, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { testConfig } from '../../src/config'
import { FakeClock } from '../../src/lib/clock'
import { createLogger } from '../../src/lib/logger'
import { MailWorker, MAX_ATTEMPTS, OutboxMailer, readOutbox, RETRY_BASE_MS, type MailMessage } from '../../src/modules/mail/outbox'
import { fakeSmtp, type FakeSmtp } from '../fake-smtp'
import { testDb } from '../support/pg-apps'

const cleanups: Array<() => void | Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const TOKEN_MAIL: MailMessage = { to: 'ann@example.com', subject: 'Reset your password', text: 'Open http://localhost/reset?token=SECRET-TOKEN-123 within 30 minutes.' }

async function setup(env: Record<string, string> = {}) {
  const config = testConfig(env)
  const h = await testDb()
  const clock = new FakeClock()
  const lines: string[] = []
  const logger = createLogger('info', { write: (s: string) => lines.push(s) })
  const deps = { config, db: h.db, clock, logger }
  const mailer = new OutboxMailer(deps)
  const worker = new MailWorker(deps)
  cleanups.push(() => h.close(), () => worker.stop())
  return { config, db: h.db, clock, logger, lines, mailer, worker, deps }
}

function smtp(): FakeSmtp {
  const s = fakeSmtp()
  cleanups.push(() => s.stop())
  return s
}

describe('OutboxMailer and readOutbox', () => {
  test('send only queues a pending row and returns at once', async () => {
    const { mailer, db, clock } = await setup()
    expect(await mailer.send(TOKEN_MAIL)).toBeUndefined()
    const rows = await readOutbox(db)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ ...TOKEN_MAIL, status: 'pending', attempts: 0, createdAt: clock.now() })
  })

  test('readOutbox filters by recipient and returns oldest first', async () => {
    const { mailer, db, clock } = await setup()
    await mailer.send({ to: 'a@example.com', subject: 'one', text: '1' })
    clock.advance(1000)
    await mailer.send({ to: 'b@example.com', subject: 'two', text: '2' })
    clock.advance(1000)
    await mailer.send({ to: 'a@example.com', subject: 'three', text: '3' })
    expect((await readOutbox(db)).map((m) => m.subject)).toEqual(['one', 'two', 'three'])
    expect((await readOutbox(db, 'a@example.com')).map((m) => m.subject)).toEqual(['one', 'three'])
    expect(await readOutbox(db, 'nobody@example.com')).toEqual([])
  })
})

describe('delivery over SMTP', () => {
  test('delivers a due row to a real SMTP socket and marks it sent', async () => {
    const server = smtp()
    const { mailer, worker, db } = await setup({ BULWARK_SMTP_URL: server.url, BULWARK_MAIL_FROM: 'Bulwark <no-reply@bulwark.test>' })
    await mailer.send(TOKEN_MAIL)
    expect(await worker.deliverDue()).toEqual({ sent: 1, kept: 0, retried: 0, failed: 0 })
    expect(server.messages).toHaveLength(1)
    const m = server.messages[0]!
    expect(m.to).toEqual(['ann@example.com'])
    expect(m.from).toContain('no-reply@bulwark.test')
    expect(m.data).toContain('Subject: Reset your password')
    expect(m.data).toContain('SECRET-TOKEN-123')
    expect((await readOutbox(db))[0]).toMatchObject({ status: 'sent', attempts: 1 })
    // nothing left to do
    expect(await worker.deliverDue()).toEqual({ sent: 0, kept: 0, retried: 0, failed: 0 })
    expect(server.messages).toHaveLength(1)
  })

  test('a temporary 4xx is retried after 1 minute on the injected clock, then delivered', async () => {
    const server = smtp()
    server.failNext(1)
    const { mailer, worker, db, clock } = await setup({ BULWARK_SMTP_URL: server.url })
    await mailer.send(TOKEN_MAIL)
    expect(await worker.deliverDue()).toMatchObject({ sent: 0, retried: 1 })
    expect((await readOutbox(db))[0]).toMatchObject({ status: 'pending', attempts: 1 })
    expect(server.transactions).toBe(1)

    clock.advance(RETRY_BASE_MS - 1)
    expect(await worker.deliverDue()).toMatchObject({ sent: 0, retried: 0 })
    expect(server.transactions).toBe(1)

    clock.advance(1)
    expect(await worker.deliverDue()).toMatchObject({ sent: 1 })
    expect(server.messages).toHaveLength(1)
    expect((await readOutbox(db))[0]).toMatchObject({ status: 'sent', attempts: 2 })
  })

  test(`backoff doubles (1, 2, 4 … min) and the row fails after ${MAX_ATTEMPTS} attempts`, async () => {
    const server = smtp()
    server.failNext(1000)
    const { mailer, worker, db, clock } = await setup({ BULWARK_SMTP_URL: server.url })
    await mailer.send(TOKEN_MAIL)
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const report = await worker.deliverDue()
      expect(server.transactions).toBe(attempt)
      if (attempt < MAX_ATTEMPTS) {
        expect(report.retried).toBe(1)
        const wait = RETRY_BASE_MS * 2 ** (attempt - 1)
        clock.advance(wait - 1)
        await worker.deliverDue()
        expect(server.transactions).toBe(attempt) // not yet due
        clock.advance(1)
      } else {
        expect(report.failed).toBe(1)
      }
    }
    expect((await readOutbox(db))[0]).toMatchObject({ status: 'failed', attempts: MAX_ATTEMPTS })
    clock.advance(365 * 86_400_000)
    await worker.deliverDue()
    expect(server.transactions).toBe(MAX_ATTEMPTS)
  })

  test('a permanent 5xx refusal fails at once, without retries', async () => {
    const server = smtp()
    server.failNext(1, '550 5.1.1 Mailbox unavailable')
    const { mailer, worker, db, clock } = await setup({ BULWARK_SMTP_URL: server.url })
    await mailer.send(TOKEN_MAIL)
    expect(await worker.deliverDue()).toMatchObject({ failed: 1 })
    clock.advance(86_400_000)
    await worker.deliverDue()
    expect(server.transactions).toBe(1)
    expect((await readOutbox(db))[0]).toMatchObject({ status: 'failed', attempts: 1 })
  })

  test('an unreachable server is a temporary failure', async () => {
    const server = smtp()
    server.stop()
    const { mailer, worker, db } = await setup({ BULWARK_SMTP_URL: server.url })
    await mailer.send(TOKEN_MAIL)
    expect(await worker.deliverDue()).toMatchObject({ retried: 1 })
    expect((await readOutbox(db))[0]).toMatchObject({ status: 'pending', attempts: 1 })
  })

  test('log lines never carry the mail text', async () => {
    const server = smtp()
    server.failNext(1)
    const { mailer, worker, lines, clock } = await setup({ BULWARK_SMTP_URL: server.url })
    await mailer.send(TOKEN_MAIL)
    await worker.deliverDue()
    clock.advance(RETRY_BASE_MS)
    await worker.deliverDue()
    const log = lines.join('')
    expect(log).toContain('mail delivery deferred')
    expect(log).toContain('mail sent')
    expect(log).not.toContain('SECRET-TOKEN-123')
  })
})

describe('without SMTP: kept in the outbox and mail.ndjson', () => {
  test('appends one JSON line per mail to <data dir>/mail.ndjson, mode 0600, and marks rows kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-mail-'))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const dataDir = join(dir, 'data')
    const { mailer, worker, db, clock, lines } = await setup({ BULWARK_DATA_DIR: dataDir, BULWARK_DB_PATH: join(dataDir, 'bulwark.sqlite') })
    await mailer.send(TOKEN_MAIL)
    clock.advance(1000)
    await mailer.send({ to: 'bob@example.com', subject: 'Verify', text: 'code 42' })
    expect(await worker.deliverDue()).toEqual({ sent: 0, kept: 2, retried: 0, failed: 0 })
    const file = join(dataDir, 'mail.ndjson')
    const parsed = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(parsed).toEqual([
      { ...TOKEN_MAIL, createdAt: new Date(clock.now() - 1000).toISOString() },
      { to: 'bob@example.com', subject: 'Verify', text: 'code 42', createdAt: new Date(clock.now()).toISOString() },
    ])
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect((await readOutbox(db)).map((m) => m.status)).toEqual(['kept', 'kept'])
    expect(lines.join('')).not.toContain('SECRET-TOKEN-123')
  })

  test('with an in-memory database nothing is written; the log line has recipient and subject but not the text', async () => {
    const { mailer, worker, db, lines, config } = await setup()
    expect(config.dbPath).toBe(':memory:')
    await mailer.send(TOKEN_MAIL)
    expect(await worker.deliverDue()).toMatchObject({ kept: 1 })
    expect(existsSync(join(config.dataDir, 'mail.ndjson'))).toBe(false)
    const entry = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'mail kept (no SMTP configured)')
    expect(entry).toMatchObject({ to: 'ann@example.com', subject: 'Reset your password' })
    expect(lines.join('')).not.toContain('SECRET-TOKEN-123')
    expect((await readOutbox(db))[0]!.status).toBe('kept')
  })

  test('an unwritable data folder falls back to the log, without the text', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-mail-'))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const blocker = join(dir, 'a-file')
    writeFileSync(blocker, '')
    const dataDir = join(blocker, 'data') // a folder under a file cannot be created
    const { mailer, worker, db, lines } = await setup({ BULWARK_DATA_DIR: dataDir, BULWARK_DB_PATH: join(dir, 'db.sqlite') })
    await mailer.send(TOKEN_MAIL)
    await mailer.send({ ...TOKEN_MAIL, to: 'second@example.com' })
    expect(await worker.deliverDue()).toMatchObject({ kept: 2 })
    const log = lines.map((l) => JSON.parse(l))
    expect(log.filter((l) => String(l.msg).startsWith('mail.ndjson not writable'))).toHaveLength(1)
    expect(log.filter((l) => l.msg === 'mail kept (no SMTP configured)').map((l) => l.to)).toEqual(['ann@example.com', 'second@example.com'])
    expect(lines.join('')).not.toContain('SECRET-TOKEN-123')
    expect((await readOutbox(db)).map((m) => m.status)).toEqual(['kept', 'kept'])
  })
})

describe('the background worker', () => {
  test('a running worker is nudged by send and delivers without waiting for the interval', async () => {
    const { db, clock, logger, config } = await setup()
    let deliver: (m: MailMessage) => void = () => {}
    const delivered = new Promise<MailMessage>((r) => (deliver = r))
    const worker = new MailWorker({ config, db, clock, logger }, { intervalMs: 3_600_000, transport: async (m) => deliver(m) })
    const mailer = new OutboxMailer({ db, clock }, () => worker.nudge())
    cleanups.push(() => worker.stop())
    worker.start()
    await mailer.send(TOKEN_MAIL)
    expect(await delivered).toMatchObject(TOKEN_MAIL)
    await worker.stop()
    expect((await readOutbox(db))[0]).toMatchObject({ status: 'sent' })
  })

  test('a stopped or never-started worker delivers nothing by itself', async () => {
    const { db, clock, logger, config } = await setup()
    let calls = 0
    const worker = new MailWorker({ config, db, clock, logger }, { intervalMs: 3_600_000, transport: async () => void calls++ })
    const mailer = new OutboxMailer({ db, clock }, () => worker.nudge())
    await mailer.send(TOKEN_MAIL)
    await Promise.resolve()
    expect(calls).toBe(0)
    expect((await readOutbox(db))[0]!.status).toBe('pending')
    await worker.deliverDue()
    expect(calls).toBe(1)
  })

  test('two workers on one database deliver each row once (the lease)', async () => {
    const { db, clock, logger, config, mailer } = await setup()
    const got: string[] = []
    const transport = async (m: MailMessage) => void got.push(m.subject)
    const a = new MailWorker({ config, db, clock, logger }, { transport })
    const b = new MailWorker({ config, db, clock, logger }, { transport })
    for (let i = 0; i < 5; i++) await mailer.send({ ...TOKEN_MAIL, subject: `m${i}` })
    await Promise.all([a.deliverDue(), b.deliverDue()])
    expect(got.sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4'])
  })
})

describe('shutdown and wiring', () => {
  test('stop lets the message being sent finish and leaves the rest pending', async () => {
    const { db, clock, logger, config, mailer } = await setup()
    let release = () => {}
    let started = () => {}
    const first = new Promise<void>((r) => (started = r))
    const sent: string[] = []
    const transport = async (m: MailMessage) => {
      if (sent.length === 0) {
        started()
        await new Promise<void>((r) => (release = r))
      }
      sent.push(m.subject)
    }
    const worker = new MailWorker({ config, db, clock, logger }, { transport })
    for (let i = 0; i < 3; i++) await mailer.send({ ...TOKEN_MAIL, subject: `m${i}` })
    const round = worker.deliverDue()
    await first
    const stopped = worker.stop()
    release()
    await Promise.all([round, stopped])
    expect(sent).toEqual(['m0'])
    expect((await readOutbox(db)).map((m) => m.status)).toEqual(['sent', 'pending', 'pending'])
    // the rest were not leased: a later round (after a restart) sends them at once
    await worker.deliverDue()
    expect(sent).toEqual(['m0', 'm1', 'm2'])
  })

  test('the app deps carry a mailer whose mail reaches the outbox and the worker', async () => {
    const { makeApp } = await import('../helpers')
    const t = await makeApp()
    cleanups.push(() => t.close())
    await t.deps.mailer.send(TOKEN_MAIL)
    expect(await readOutbox(t.deps.db, TOKEN_MAIL.to)).toMatchObject([{ ...TOKEN_MAIL, status: 'pending' }])
    expect(await t.deps.mailWorker.deliverDue()).toMatchObject({ kept: 1 })
    expect(await t.deps.passwordPolicy.check('short')).toMatchObject([{ code: 'too_short' }])
    expect(await t.deps.hasher.verify('x', await t.deps.hasher.hash('x'))).toBe(true)
  })
})
