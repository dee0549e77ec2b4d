/** The README's webhook verification example, extracted and run against signatures made by the `standardwebhooks` package. */
import { expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Webhook } from 'standardwebhooks'

test('the README webhook verification example accepts genuine deliveries and refuses forged ones', async () => {
  const readme = await Bun.file(join(import.meta.dir, '..', 'README.md')).text()
  const section = readme.slice(readme.indexOf('**Verifying a delivery**'))
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1]
  expect(code).toContain('export function verifyWebhook')
  const dir = mkdtempSync(join(tmpdir(), 'bw-readme-'))
  try {
    writeFileSync(join(dir, 'verify.mjs'), code!)
    const { verifyWebhook } = (await import(join(dir, 'verify.mjs'))) as { verifyWebhook: (s: string, h: Record<string, string>, b: string, now?: number) => boolean }
    const secret = `whsec_${Buffer.alloc(32, 3).toString('base64')}`
    const other = `whsec_${Buffer.alloc(32, 4).toString('base64')}`
    const body = JSON.stringify({ type: 'user.created', timestamp: new Date().toISOString(), data: { userId: 'u1' } })
    const at = new Date()
    const ts = String(Math.floor(at.getTime() / 1000))
    const sig = new Webhook(secret).sign('msg_1', at, body)
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': ts, 'webhook-signature': sig }
    expect(verifyWebhook(secret, headers, body)).toBe(true)
    expect(verifyWebhook(other, headers, body)).toBe(false)
    expect(verifyWebhook(secret, headers, body.replace('u1', 'u2'))).toBe(false)
    expect(verifyWebhook(secret, { ...headers, 'webhook-id': 'msg_2' }, body)).toBe(false)
    expect(verifyWebhook(secret, headers, body, Number(ts) + 3600)).toBe(false)
    // A rotation overlap: two signatures, either secret verifies.
    const both = { ...headers, 'webhook-signature': `${new Webhook(other).sign('msg_1', at, body)} ${sig}` }
    expect(verifyWebhook(secret, both, body)).toBe(true)
    expect(verifyWebhook(other, both, body)).toBe(true)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
