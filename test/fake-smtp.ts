/**
 * A minimal SMTP server on a real socket (Bun.listen, port 0) for tests: 220 greeting, EHLO/HELO → 250,
 * MAIL/RCPT → 250, DATA → 354, "." → 250, QUIT → 221. `failNext` makes the next transactions answer
 * MAIL FROM with an error (4xx temporary, 5xx permanent).
 */
import type { Socket, TCPSocketListener } from 'bun'

export interface ReceivedMail {
  from: string
  to: string[]
  /** The raw message (headers and body) as sent after DATA, dot-stuffing removed. */
  data: string
}

export interface FakeSmtp {
  port: number
  url: string
  messages: ReceivedMail[]
  /** MAIL FROM commands seen, successful or not. */
  transactions: number
  failNext(count: number, reply?: string): void
  stop(): void
}

interface Session {
  buf: string
  inData: boolean
  lines: string[]
  from: string
  to: string[]
}

export function fakeSmtp(): FakeSmtp {
  let failures = 0
  let failReply = '451 4.3.0 Try again later'
  const state: FakeSmtp = {
    port: 0,
    url: '',
    messages: [],
    transactions: 0,
    failNext(count, reply = '451 4.3.0 Try again later') {
      failures = count
      failReply = reply
    },
    stop: () => listener.stop(true),
  }
  const reply = (s: Socket<Session>, line: string) => s.write(`${line}\r\n`)

  const command = (s: Socket<Session>, line: string) => {
    const d = s.data
    if (d.inData) {
      if (line === '.') {
        d.inData = false
        state.messages.push({ from: d.from, to: d.to, data: d.lines.join('\r\n') })
        reply(s, '250 2.0.0 Ok: queued')
      } else d.lines.push(line.startsWith('..') ? line.slice(1) : line)
      return
    }
    const verb = line.slice(0, 4).toUpperCase()
    if (verb === 'EHLO') return s.write('250-fake.test\r\n250 8BITMIME\r\n')
    if (verb === 'HELO' || verb === 'RSET' || verb === 'NOOP') return reply(s, '250 Ok')
    if (verb === 'MAIL') {
      state.transactions++
      if (failures > 0) {
        failures--
        return reply(s, failReply)
      }
      d.from = line.slice(10).trim()
      d.to = []
      return reply(s, '250 Ok')
    }
    if (verb === 'RCPT') {
      d.to.push(line.slice(8).trim().replace(/^<|>$/g, ''))
      return reply(s, '250 Ok')
    }
    if (verb === 'DATA') {
      d.inData = true
      d.lines = []
      return reply(s, '354 End data with <CR><LF>.<CR><LF>')
    }
    if (verb === 'QUIT') {
      reply(s, '221 Bye')
      return s.end()
    }
    reply(s, '502 5.5.2 Command not recognised')
  }

  const listener: TCPSocketListener<Session> = Bun.listen<Session>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      open(s) {
        s.data = { buf: '', inData: false, lines: [], from: '', to: [] }
        reply(s, '220 fake.test ESMTP')
      },
      data(s, chunk) {
        s.data.buf += chunk.toString('utf8')
        let i: number
        while ((i = s.data.buf.indexOf('\r\n')) >= 0) {
          const line = s.data.buf.slice(0, i)
          s.data.buf = s.data.buf.slice(i + 2)
          command(s, line)
        }
      },
    },
  })
  state.port = listener.port
  state.url = `smtp://127.0.0.1:${listener.port}`
  return state
}
