/**
 * OAuth 2.0 error responses (RFC 6749 §5.2): `{error, error_description}` as `application/json`, with
 * `Cache-Control: no-store`; an `invalid_client` after HTTP Basic is a 401 with `WWW-Authenticate: Basic`
 * (§5.2). The OAuth endpoints answer these instead of problem documents, so off-the-shelf clients read them.
 */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'unsupported_token_type'
  | 'server_error'

export class OAuthError extends Error {
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly status = 400,
    readonly headers: Record<string, string> = {},
  ) {
    super(description)
    this.name = 'OAuthError'
  }

  toResponse(requestId: string): Response {
    const headers = new Headers({ 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', pragma: 'no-cache', 'x-request-id': requestId })
    for (const [k, v] of Object.entries(this.headers)) headers.set(k, v)
    return new Response(JSON.stringify({ error: this.error, error_description: this.description }), { status: this.status, headers })
  }
}

/** 401 `invalid_client`; with the Basic challenge when the client tried HTTP Basic (RFC 6749 §5.2). */
export const invalidClient = (basic: boolean) =>
  new OAuthError('invalid_client', 'Client authentication failed.', 401, basic ? { 'www-authenticate': 'Basic realm="bulwark", charset="UTF-8"' } : {})

export const invalidRequest = (description: string) => new OAuthError('invalid_request', description)
