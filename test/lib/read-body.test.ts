/**
 * readBody (src/lib/read-body.ts): a body framed by Content-Length within the limit is taken whole with
 * `arrayBuffer()`, without the ReadableStream of `request.body`; any other body (chunked, no length, a length
 * over the limit) is read through that stream, counted against the limit. Both end at the deadline with a 408.
 * The socket-level behaviour (408 and the connection closed, for both framings) is tested on the binary in
 * test/binary/operations.test.ts.
 */
import { describe, expect, test } from 'bun:test'
import { AppError } from '../../src/lib/errors'
import { readBody } from '../../src/lib/read-body'

const tooLarge = () => new AppError(413, 'payload_too_large', 'too large')

/** A request whose `body` getter throws: reading it would create the ReadableStream. */
function withoutStream(req: Request): Request {
  Object.defineProperty(req, 'body', {
    get() {
      throw new Error('request.body was read')
    },
  })
  return req
}

describe('readBody', () => {
  test('a Content-Length body within the limit is read without the request stream', async () => {
    const text = JSON.stringify({ permission: 'users:read', userId: 'u1' })
    const req = withoutStream(new Request('http://x/v1/authz/check', { method: 'POST', body: text, headers: { 'content-length': String(Buffer.byteLength(text)) } }))
    expect(new TextDecoder().decode(await readBody(req, 1000, 1024, tooLarge))).toBe(text)
  })

  test('Content-Length 0 is an empty body', async () => {
    const req = withoutStream(new Request('http://x/', { method: 'POST', headers: { 'content-length': '0' } }))
    expect((await readBody(req, 1000, 1024, tooLarge)).byteLength).toBe(0)
  })

  test('without a length the stream is read, and a body over the limit is a 413 as soon as it is over', async () => {
    const chunks = ['{"a":"', 'x'.repeat(600), 'x'.repeat(600), '"}']
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        const next = chunks.shift()
        if (next === undefined) c.close()
        else c.enqueue(new TextEncoder().encode(next))
      },
    })
    const req = new Request('http://x/', { method: 'POST', body: stream })
    expect(req.headers.get('content-length')).toBeNull()
    const err = await readBody(req, 1000, 1024, tooLarge).catch((e: AppError) => e)
    expect((err as AppError).status).toBe(413)
  })

  test('a declared length over the limit takes the counted path (the parser refuses it before, by its header)', async () => {
    const text = 'y'.repeat(2000)
    const req = new Request('http://x/', { method: 'POST', body: text, headers: { 'content-length': String(text.length) } })
    const err = await readBody(req, 1000, 1024, tooLarge).catch((e: AppError) => e)
    expect((err as AppError).status).toBe(413)
  })

  test('a Content-Length body that does not arrive in time is a 408', async () => {
    const stream = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) })
    const req = new Request('http://x/', { method: 'POST', body: stream, headers: { 'content-length': '50' } })
    const err = await readBody(req, 50, 1024, tooLarge).catch((e: AppError) => e)
    expect((err as AppError).status).toBe(408)
  })
})
