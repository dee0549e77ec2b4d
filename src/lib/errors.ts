/**
 * Errors that services throw and the error handler turns into RFC 9457 problem documents.
 * A service never builds an HTTP response; it throws an AppError with a stable snake_case `code` from the
 * registry (`./error-codes`), so an unregistered code fails the type check.
 */
import type { ErrorCode } from './error-codes'

export type { ErrorCode }
export interface FieldError {
  /** JSON pointer of the failing field, e.g. `/email`; never the submitted value. */
  path: string
  message: string
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

export const titleOf = (status: number) => TITLES[status] ?? 'Error'

export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    readonly detail?: string,
    readonly extra?: { errors?: FieldError[]; headers?: Record<string, string>; fields?: Record<string, unknown> },
  ) {
    super(detail ?? code)
    this.name = 'AppError'
  }
}

export const badRequest = (code: ErrorCode, detail: string, errors?: FieldError[]) => new AppError(400, code, detail, { errors })
export const unauthorized = (code: ErrorCode = 'unauthorized', detail = 'Authentication is required.') => new AppError(401, code, detail)
export const forbidden = (detail = 'You do not have permission to do this.', code: ErrorCode = 'forbidden') => new AppError(403, code, detail)
export const notFound = (detail = 'The resource does not exist.') => new AppError(404, 'not_found', detail)
export const conflict = (detail: string, code: ErrorCode = 'conflict') => new AppError(409, code, detail)
export const unprocessable = (code: ErrorCode, detail: string, errors?: FieldError[]) => new AppError(422, code, detail, { errors })
