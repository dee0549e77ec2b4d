/**
 * Strict body parsing (replaces Elysia's lenient defaults).
 * - JSON only (`application/json` or `+json`), plus multipart on upload routes; anything else → 415.
 * - Content-Encoding other than identity → 415 (no decompression bombs, no smuggling past the size limit).
 * - Declared or actual size over the limit → 413, before the body is parsed.
 * - Invalid UTF-8, malformed JSON, nesting deeper than 32, or `__proto__`/`constructor`/`prototype`
 *   keys → 400. Duplicate keys: the last one wins (JSON.parse), deterministically.
 */
import { Elysia } from 'elysia'
import { AppError } from '../lib/errors'
import { readBody } from '../lib/read-body'
import { contextOf } from './request-context'
import { pathOf } from '../lib/request-url'
import { invalidRequest } from '../modules/oauth/errors'

export const MAX_JSON_DEPTH = 32
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])

function checkShape(value: unknown): void {
  // Iterative walk: a hostile body must not blow the stack of the checker itself.
  const stack: [unknown, number][] = [[value, 1]]
  while (stack.length) {
    const [v, depth] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (depth > MAX_JSON_DEPTH) throw new AppError(400, 'malformed_json', `JSON nesting deeper than ${MAX_JSON_DEPTH} levels is not accepted.`)
    if (Array.isArray(v)) {
      for (const x of v) stack.push([x, depth + 1])
    } else {
      for (const k of Object.keys(v)) {
        if (FORBIDDEN_KEYS.has(k)) throw new AppError(400, 'malformed_json', `The key "${k}" is not accepted.`)
        stack.push([(v as Record<string, unknown>)[k], depth + 1])
      }
    }
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })

/** Parses a JSON body strictly; throws AppError 400 on anything ambiguous. */
export function parseJson(bytes: Uint8Array): unknown {
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    throw new AppError(400, 'malformed_json', 'The body is not valid UTF-8.')
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new AppError(400, 'malformed_json', 'The body is not valid JSON.')
  }
  checkShape(value)
  return value
}

export const MAX_FORM_PARAMETERS = 50

/**
 * Parses an OAuth form body strictly: UTF-8, at most 50 parameters, none repeated (RFC 6749 §3.2: parameters
 * MUST NOT be included more than once), no `__proto__`-style names; any failure is `invalid_request`.
 */
export function parseForm(bytes: Uint8Array): Record<string, string> {
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    throw invalidRequest('The body is not valid UTF-8.')
  }
  const out: Record<string, string> = Object.create(null)
  let n = 0
  for (const part of text.split('&')) {
    if (part === '') continue
    if (++n > MAX_FORM_PARAMETERS) throw invalidRequest(`At most ${MAX_FORM_PARAMETERS} parameters are accepted.`)
    const eq = part.indexOf('=')
    let name: string
    let value: string
    try {
      name = decodeURIComponent((eq < 0 ? part : part.slice(0, eq)).replace(/\+/g, ' '))
      value = decodeURIComponent((eq < 0 ? '' : part.slice(eq + 1)).replace(/\+/g, ' '))
    } catch {
      throw invalidRequest('The body is not valid form-urlencoding.')
    }
    if (FORBIDDEN_KEYS.has(name)) throw invalidRequest(`The parameter "${name}" is not accepted.`)
    if (Object.hasOwn(out, name)) throw invalidRequest(`The parameter ${name.slice(0, 64)} is given more than once.`)
    out[name] = value
  }
  return { ...out }
}

export interface BodyLimits {
  json: number
  upload: number
  /** Paths that take multipart uploads. */
  uploadPaths: (path: string) => boolean
  /** Paths that take `application/x-www-form-urlencoded` bodies only (the OAuth endpoints, RFC 6749 §4.4.2). */
  formPaths?: (path: string) => boolean
  /** Longest time to receive a body (ms): past it, 408 (src/lib/read-body.ts). */
  timeoutMs?: number
}

export const tooLarge = (limit: number) => new AppError(413, 'payload_too_large', `The body is larger than ${limit} bytes.`)

export function bodyParser(limits: BodyLimits) {
  return new Elysia({ name: 'body-parser' })
    .onRequest(({ request }) => {
      // Refuse a declared oversize body before routing, so even unknown routes never buffer it.
      const declared = Number(request.headers.get('content-length') ?? 'NaN')
      if (!Number.isFinite(declared)) return
      const limit = limits.uploadPaths(pathOf(request.url)) ? limits.upload : limits.json
      if (declared > limit) throw tooLarge(limit)
    })
    .onParse({ as: 'global' }, async ({ request, contentType }) => {
    const encoding = request.headers.get('content-encoding')
    if (encoding && encoding.trim().toLowerCase() !== 'identity') {
      throw new AppError(415, 'unsupported_media_type', 'Content-Encoding is not accepted; send the body uncompressed.')
    }
    const path = pathOf(request.url)
    const isUpload = limits.uploadPaths(path)
    const limit = isUpload ? limits.upload : limits.json
    const declared = Number(request.headers.get('content-length') ?? 'NaN')
    if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit)
    const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
    if (isUpload) {
      if (type === 'multipart/form-data') return undefined // Elysia's own multipart parser
      throw new AppError(415, 'unsupported_media_type', 'Send the file as multipart/form-data.')
    }
    const isForm = limits.formPaths?.(path) ?? false
    if (isForm && request.body === null) return {}
    if (isForm && type !== 'application/x-www-form-urlencoded') throw invalidRequest('Send the body as application/x-www-form-urlencoded (RFC 6749 §4.4.2).')
    const bytes = await readBody(request, limits.timeoutMs ?? 10_000, limit, () => tooLarge(limit))
    if (bytes.byteLength > limit) throw tooLarge(limit)
    // Kept for a re-run of the request after a held write lock (src/plugins/storage-retry.ts): no copy of the stream up front.
    contextOf(request).bodyBytes = bytes
    if (isForm) return parseForm(bytes)
    if (bytes.byteLength === 0) return null
    if (type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'))) return parseJson(bytes)
    throw new AppError(415, 'unsupported_media_type', isUpload ? 'Send the file as multipart/form-data.' : 'Send the body as application/json.')
  })
}
