/** Mail links point at the application (BULWARK_APP_URL / BULWARK_MAIL_LINK_*), never at a Bulwark path that 404s. */
import { describe, expect, test } from 'bun:test'
import { makeApp, mailsTo, signUp, STRONG_PASSWORD, tokenFromMail, uniqueEmail, type TestApp } from '../helpers'

/** Registers (verification mail), asks for a reset and locks the account (unlock mail); returns the three mails. */
async function threeMails(a: TestApp) {
  const email = uniqueEmail()
  await signUp(a, { email })
  expect((await a.req('POST', '/v1/auth/password/forgot', { body: { email } })).status).toBe(202)
  for (let i = 0; i < a.deps.config.lockout.threshold; i++) await a.req('POST', '/v1/auth/login', { body: { email, password: 'wrong password guess 000' } })
  const mails = await mailsTo(a, email)
  const pick = (re: RegExp) => mails.find((m) => re.test(m.subject))?.text ?? ''
  return { email, verify: pick(/verify/i), reset: pick(/reset/i), unlock: pick(/locked/i) }
}

describe('mail links', () => {
  test('unset: the mails carry the token and the API call, and no link at all', async () => {
    const a = await makeApp()
    try {
      const m = await threeMails(a)
      for (const [text, call] of [[m.verify, 'POST /v1/auth/email/verify'], [m.reset, 'POST /v1/auth/password/reset'], [m.unlock, 'POST /v1/auth/unlock']] as const) {
        expect(text).toContain(call)
        expect(text).not.toMatch(/https?:\/\//)
      }
      // The token in the mail is the one that works.
      const token = await tokenFromMail(a, m.email, /reset/i)
      expect((await a.req('POST', '/v1/auth/password/reset', { body: { token, password: `${STRONG_PASSWORD} new` } })).status).toBe(204)
    } finally {
      await a.close()
    }
  })

  test('BULWARK_APP_URL: links to the application pages with the token in the fragment', async () => {
    const a = await makeApp({ BULWARK_APP_URL: 'https://app.example.com' })
    try {
      const m = await threeMails(a)
      expect(m.verify).toMatch(/https:\/\/app\.example\.com\/verify-email#token=[\w-]+/)
      expect(m.reset).toMatch(/https:\/\/app\.example\.com\/reset-password#token=[\w-]+/)
      expect(m.unlock).toMatch(/https:\/\/app\.example\.com\/unlock#token=[\w-]+/)
      for (const text of [m.verify, m.reset, m.unlock]) expect(text).not.toContain('http://localhost')
      const token = /reset-password#token=([\w-]+)/.exec(m.reset)![1]!
      expect((await a.req('POST', '/v1/auth/password/reset', { body: { token, password: `${STRONG_PASSWORD} new` } })).status).toBe(204)
    } finally {
      await a.close()
    }
  })

  test('per-link templates win over BULWARK_APP_URL, {token} replaced', async () => {
    const a = await makeApp({
      BULWARK_APP_URL: 'https://app.example.com',
      BULWARK_MAIL_LINK_RESET: 'https://id.example.com/r?token={token}&src=mail',
      BULWARK_MAIL_LINK_VERIFY: 'https://id.example.com/v/{token}',
    })
    try {
      const m = await threeMails(a)
      expect(m.reset).toMatch(/https:\/\/id\.example\.com\/r\?token=[\w-]+&src=mail/)
      expect(m.verify).toMatch(/https:\/\/id\.example\.com\/v\/[\w-]+/)
      expect(m.unlock).toMatch(/https:\/\/app\.example\.com\/unlock#token=[\w-]+/)
    } finally {
      await a.close()
    }
  })
})
