/**
 * One global error handler: every failure becomes an RFC 9457 problem document
 * (https://www.rfc-editor.org/rfc/rfc9457) with a stable `code` and the request id.
 * Validation errors name the failing fields but never echo submitted values (Elysia's default body would).
 * Anything unexpected is a 500 `internal` carrying only the request id; the detail goes to the log.
 * Real Response objects are returned because a global mapResponse would turn `status()` into an empty 200.
 */
import { Elysia } from 'elysia'
import { AppError, titleOf, type ErrorCode, type FieldError } from '../lib/errors'
import type { Logger } from '../lib/logger'
import { storageAppError, unstorableTextError } from '../lib/storage-errors'
import { OAuthError } from '../modules/oauth/errors'
import { contextOf } from './request-context'

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: ErrorCode
  requestId: string
  errors?: FieldError[]
  [extra: string]: unknown
}

/** The media type of every problem document (RFC 9457 §3), with its charset (RFC 8259 §8.1: JSON is UTF-8). */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'

/** Builds a problem+json Response. */
export function problemResponse(status: number, code: ErrorCode, detail: string, requestId: string, extra?: AppError['extra']): Response {
  const body: Problem = { type: `urn:bulwark:problem:${code}`, title: titleOf(status), status, detail, code, requestId, ...extra?.fields }
  if (extra?.errors?.length) body.errors = extra.errors
  const headers = new Headers({ 'content-type': PROBLEM_CONTENT_TYPE, 'x-request-id': requestId, 'cache-control': 'no-store' })
  for (const [k, v] of Object.entries(extra?.headers ?? {})) headers.set(k, v)
  return new Response(JSON.stringify(body), { status, headers })
}

interface TypeBoxIssue {
  path?: string
  message?: string
  schema?: { error?: string }
}

/** Field errors of a validation failure: paths and messages only, one per path, at most 20. */
function fieldErrors(error: unknown): FieldError[] {
  const all = ((error as { all?: TypeBoxIssue[] }).all ?? []) as TypeBoxIssue[]
  const seen = new Set<string>()
  const out: FieldError[] = []
  for (const e of all) {
    const path = e.path || '/'
    if (seen.has(path)) continue
    seen.add(path)
    const msg = (e.message ?? 'invalid value').replace(/\bExpected union value\b/, 'Invalid value')
    out.push({ path, message: msg.slice(0, 200) })
    if (out.length >= 20) break
  }
  return out
}

const ON_LABEL: Record<string, string> = { body: 'body', query: 'query string', params: 'path', headers: 'headers', cookie: 'cookies' }

/** Told about every 4xx refusal (status, code, what part of the request failed); must not throw. */
export type ProblemObserver = (request: Request, status: number, code: string, location?: string) => void | Promise<void>

export function errorHandler(logger: Logger, onProblem?: ProblemObserver) {
  return new Elysia({ name: 'error-handler' }).onError({ as: 'global' }, async ({ code, error, request, path, route }) => {
    const ctx = contextOf(request)
    ctx.route ??= route
    const rid = ctx.requestId
    let e: unknown = error
    if (code === 'PARSE' && ((error as { cause?: unknown }).cause instanceof AppError || (error as { cause?: unknown }).cause instanceof OAuthError)) e = (error as { cause: AppError }).cause
    // The OAuth endpoints answer in the RFC 6749 §5.2 shape, not as problem documents.
    if (e instanceof OAuthError) {
      await onProblem?.(request, e.status, e.error)
      return e.toResponse(rid)
    }
    // A full disk, a read-only file or a held write lock is a 503 with Retry-After, not a 500.
    e = storageAppError(e) ?? unstorableTextError(e) ?? e
    if (e instanceof AppError) {
      // A 503 is a dependency known to be down (its circuit breaker logs each state change once), not a bug.
      if (e.status >= 500 && e.status !== 503) logger.error({ err: e, requestId: rid, path }, 'request failed')
      else if (e.status < 500) await onProblem?.(request, e.status, e.code)
      return problemResponse(e.status, e.code, e.detail ?? titleOf(e.status), rid, e.extra)
    }
    switch (code) {
      case 'VALIDATION': {
        const on = (error as { type?: string }).type ?? 'body'
        if (on === 'response') {
          logger.error({ requestId: rid, path, errors: fieldErrors(error) }, 'response failed its schema')
          return problemResponse(500, 'internal', `An unexpected error occurred. Quote request id ${rid} when reporting it.`, rid)
        }
        await onProblem?.(request, 422, 'validation_failed', on)
        return problemResponse(422, 'validation_failed', `The request ${ON_LABEL[on] ?? on} is not valid.`, rid, { errors: fieldErrors(error) })
      }
      case 'NOT_FOUND':
        return problemResponse(404, 'not_found', 'No such route.', rid)
      case 'PARSE':
        return problemResponse(400, 'malformed_json', 'The body could not be parsed.', rid)
      case 'INVALID_COOKIE_SIGNATURE':
        return problemResponse(400, 'invalid_cookie', 'A cookie could not be verified.', rid)
      case 'INVALID_FILE_TYPE':
        return problemResponse(415, 'unsupported_media_type', 'The file type is not accepted.', rid)
      default: {
        const status = (error as { status?: unknown })?.status
        if (typeof status === 'number' && status >= 400 && status < 500) {
          return problemResponse(status, status === 413 ? 'payload_too_large' : 'bad_request', titleOf(status), rid)
        }
        logger.error({ err: error, requestId: rid, path }, 'unexpected error')
        return problemResponse(500, 'internal', `An unexpected error occurred. Quote request id ${rid} when reporting it.`, rid)
      }
    }
  })
}
