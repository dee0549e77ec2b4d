import { afterEach, describe, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expectProblem, grantRoleDirect, makeApp, signUp, type TestApp } from '../helpers'
import { sqlCount } from '../support/sql'

let a: TestApp
afterEach(() => a?.close())

// A real 1×1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64')
const PDF = Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n')
const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'

const form = (bytes: Uint8Array | string, name: string, type: string) => {
  const f = new FormData()
  f.append('file', new File([typeof bytes === 'string' ? bytes : new Uint8Array(bytes)], name, { type }))
  return f
}

async function app(env: Record<string, string> = {}) {
  return await makeApp({ BULWARK_DATA_DIR: mkdtempSync(join(tmpdir(), 'bw-files-')), ...env })
}

describe('files', () => {
  test('upload a PNG: 201 with id, name, type, size, sha256; metadata, content and delete', async () => {
    a = await app()
    const { accessToken } = await signUp(a)
    const r = await a.req('POST', '/v1/files', { token: accessToken, raw: form(PNG, '../../etc/dot.png', 'image/png') })
    expect(r.status).toBe(201)
    expect(r.body).toMatchObject({ name: 'dot.png', type: 'image/png', size: PNG.length, sha256: new Bun.CryptoHasher('sha256').update(PNG).digest('hex') })
    const meta = await a.req('GET', `/v1/files/${r.body.id}`, { token: accessToken })
    expect(meta.body.id).toBe(r.body.id)
    const res = await a.handle(new Request(`http://localhost/v1/files/${r.body.id}/content`, { headers: { authorization: `Bearer ${accessToken}` } }))
    expect(res.status).toBe(200)
    expect(res.headers.get('content-disposition')).toStartWith('attachment;')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('content-security-policy')).toContain('sandbox')
    expect(Buffer.from(await res.arrayBuffer()).equals(PNG)).toBe(true)
    const list = await a.req('GET', '/v1/files', { token: accessToken })
    expect(list.body.items.map((f: { id: string }) => f.id)).toEqual([r.body.id])
    expect((await a.req('DELETE', `/v1/files/${r.body.id}`, { token: accessToken })).status).toBe(204)
    expectProblem(await a.req('GET', `/v1/files/${r.body.id}`, { token: accessToken }), 404)
  })

  test('type by contents: a disallowed type or contents not matching the claimed type is 415, and nothing is stored', async () => {
    a = await app()
    const { accessToken } = await signUp(a)
    expectProblem(await a.req('POST', '/v1/files', { token: accessToken, raw: form('<script>alert(1)</script>', 'x.png', 'image/png') }), 415, 'unsupported_media_type')
    expectProblem(await a.req('POST', '/v1/files', { token: accessToken, raw: form(PNG, 'x.jpg', 'image/jpeg') }), 415, 'unsupported_media_type')
    expectProblem(await a.req('POST', '/v1/files', { token: accessToken, raw: form('plain text', 'x.txt', 'text/plain') }), 415)
    expectProblem(await a.req('POST', '/v1/files', { token: accessToken, body: { file: 'x' } }), 415)
    expect(await sqlCount(a.deps, 'SELECT count(*) AS n FROM files')).toBe(0)
    expect((await a.req('POST', '/v1/files', { token: accessToken, raw: form(PDF, 'doc.pdf', 'application/pdf') })).status).toBe(201)
  })

  test('too large is 413', async () => {
    a = await app({ BULWARK_UPLOAD_MAX_BYTES: '2048' })
    const { accessToken } = await signUp(a)
    const big = new Uint8Array(4096)
    big.set(PNG)
    expectProblem(await a.req('POST', '/v1/files', { token: accessToken, raw: form(big, 'big.png', 'image/png') }), 413, 'payload_too_large')
  })

  test("another user's file is 404, never 403; files:read:any sees it", async () => {
    a = await app()
    const owner = await signUp(a)
    const other = await signUp(a)
    const f = (await a.req('POST', '/v1/files', { token: owner.accessToken, raw: form(PNG, 'a.png', 'image/png') })).body
    expectProblem(await a.req('GET', `/v1/files/${f.id}`, { token: other.accessToken }), 404)
    expectProblem(await a.req('GET', `/v1/files/${f.id}/content`, { token: other.accessToken }), 404)
    expectProblem(await a.req('DELETE', `/v1/files/${f.id}`, { token: other.accessToken }), 404)
    expect((await a.req('GET', '/v1/files', { token: other.accessToken })).body.items).toEqual([])
    await grantRoleDirect(a, other.user.id, 'moderator')
    expect((await a.req('GET', `/v1/files/${f.id}`, { token: other.accessToken })).status).toBe(200)
    expect((await a.req('GET', '/v1/files', { token: other.accessToken })).body.items.length).toBe(1)
  })

  test('avatar: images only, a new one replaces the old', async () => {
    a = await app()
    const { accessToken } = await signUp(a)
    expectProblem(await a.req('PUT', '/v1/me/avatar', { token: accessToken, raw: form(PDF, 'a.pdf', 'application/pdf') }), 415)
    const one = await a.req('PUT', '/v1/me/avatar', { token: accessToken, raw: form(PNG, 'me.png', 'image/png') })
    expect(one.status).toBe(200)
    const two = await a.req('PUT', '/v1/me/avatar', { token: accessToken, raw: form(PNG, 'me2.png', 'image/png') })
    expect(two.status).toBe(200)
    expect(await sqlCount(a.deps, "SELECT count(*) AS n FROM files WHERE purpose = 'avatar'")).toBe(1)
    expect(readdirSync(join(a.deps.config.dataDir, 'files'))).toEqual([two.body.id])
  })

  test('with a scanner configured but unreachable, uploads are refused (503), never stored unscanned', async () => {
    a = await app({ BULWARK_CLAMD: '127.0.0.1:1' })
    const { accessToken } = await signUp(a)
    expectProblem(await a.req('POST', '/v1/files', { token: accessToken, raw: form(PNG, 'a.png', 'image/png') }), 503, 'scanner_unavailable')
    expect(await sqlCount(a.deps, 'SELECT count(*) AS n FROM files')).toBe(0)
    const ready = await a.req('GET', '/health/ready')
    expect(ready.status).toBe(200)
    expect(ready.body.checks.scanner.status).toBe('down')
  })

  const clamd = process.env.BULWARK_TEST_CLAMD
  test.skipIf(!clamd)('a real clamd rejects malware with 422 file_rejected and passes clean files (needs BULWARK_TEST_CLAMD)', async () => {
    a = await app({ BULWARK_CLAMD: clamd! })
    const { accessToken } = await signUp(a)
    // EICAR inside a PDF wrapper: the type check passes, the scanner must catch it.
    const infected = Buffer.concat([PDF, Buffer.from(EICAR)])
    const r = await a.req('POST', '/v1/files', { token: accessToken, raw: form(infected, 'evil.pdf', 'application/pdf') })
    expectProblem(r, 422, 'file_rejected')
    expect((await a.deps.audit.list({ type: 'file_rejected', limit: 5 })).length).toBe(1)
    expect((await a.req('POST', '/v1/files', { token: accessToken, raw: form(PNG, 'ok.png', 'image/png') })).status).toBe(201)
    expect((await a.req('GET', '/health/ready')).body.checks.scanner.status).toBe('ok')
  })
})
