/**
 * The registry of every problem `code` the server can send (RFC 9457 §3.2 extension member), with the
 * HTTP statuses it comes with and what it means. `AppError` only takes an `ErrorCode`, so a code that
 * is not here (a typo included) fails `tsc`; the README's "Error codes" table is checked against this
 * object by test/error-codes.test.ts. A code is part of the contract: add, never rename.
 */
export const ERROR_CODES = {
  bad_request: { status: [400], meaning: 'The request could not be understood (a protocol-level fault that has no more specific code).' },
  malformed_json: { status: [400], meaning: 'The body is not valid UTF-8 JSON, nests deeper than 32 levels, or has a `__proto__`/`constructor`/`prototype` key.' },
  invalid_cursor: { status: [400], meaning: 'The `cursor` query parameter was not issued by this list.' },
  invalid_cookie: { status: [400], meaning: 'A signed cookie could not be verified.' },
  invalid_token: { status: [400, 401], meaning: '400: a mailed single-use token (reset, verification, unlock) is unknown, spent or expired; 401: the access token is invalid, or its session or account has ended.' },
  webauthn_failed: { status: [400], meaning: 'A WebAuthn response could not be verified (wrong challenge, origin, RP id or signature).' },
  unauthorized: { status: [401], meaning: 'Authentication is required: no bearer token (or session cookie) was sent.' },
  invalid_credentials: { status: [401], meaning: 'Wrong email or password, unknown account or locked account (indistinguishable), wrong current password, or an unknown passkey.' },
  invalid_refresh_token: { status: [401], meaning: 'The refresh token is missing, unknown, spent (the session family is then revoked) or expired.' },
  invalid_mfa_token: { status: [401], meaning: 'The `mfaToken` of a sign-in is unknown, expired or already used; sign in again.' },
  invalid_mfa_proof: { status: [401], meaning: 'The second factor given in the MFA step was not accepted.' },
  user_verification_required: { status: [401], meaning: 'Passwordless sign-in needs a passkey that verified the user (PIN or biometrics).' },
  reauthentication_required: { status: [401], meaning: 'The change needs a recent proof (step-up): confirm the password or a TOTP code at POST /v1/me/reauthenticate.' },
  forbidden: { status: [403], meaning: 'The caller lacks the permission the route names, or the rules of role levels forbid the change.' },
  csrf_failed: { status: [403], meaning: 'A cookie-session request without a valid `X-CSRF-Token`, or from a foreign origin.' },
  mfa_enrollment_required: { status: [403], meaning: 'A role of the user requires a second factor and this session has none: enrol TOTP or a passkey first.' },
  owner_required: { status: [403], meaning: 'Only a holder of the `owner` role may do this (resetting another user\'s second factors).' },
  mfa_waiver_forbidden: { status: [403], meaning: 'A role that holds administrative permissions must require MFA; only an owner may set `mfaRequired: false` on it.' },
  api_key_not_allowed: { status: [403], meaning: 'The route changes credentials (password, second factors, sessions, API keys): it refuses API keys; sign in instead.' },
  not_found: { status: [404], meaning: 'No such route, or no such resource visible to the caller (never 403: no existence oracle).' },
  conflict: { status: [409], meaning: 'The resource already exists (an email that is taken, a role name in use).' },
  no_second_factor: { status: [409], meaning: 'The account has no active second factor (recovery codes need one; the MFA step has nothing to ask).' },
  passkey_exists: { status: [409], meaning: 'This passkey is already registered.' },
  totp_already_active: { status: [409], meaning: 'An authenticator app is already active; remove it before enrolling another.' },
  totp_not_pending: { status: [409], meaning: 'There is no pending authenticator enrolment to confirm.' },
  totp_unreadable: { status: [409], meaning: 'The stored authenticator enrolment cannot be decrypted (the master secret changed); remove it and enrol again.' },
  builtin_role: { status: [409], meaning: 'Built-in roles cannot be renamed or deleted.' },
  role_in_use: { status: [409], meaning: 'The role is still held by users; give `?reassign=<role>`.' },
  builtin_permission: { status: [409], meaning: 'Built-in permissions cannot be deleted.' },
  permission_in_use: { status: [409], meaning: 'A role still holds the application permission; give `?cascade=true` to remove it from those roles.' },
  request_timeout: { status: [408], meaning: 'The request body did not arrive within `BULWARK_BODY_TIMEOUT`; the connection is closed.' },
  payload_too_large: { status: [413], meaning: 'The body (or the uploaded file) is larger than the configured limit.' },
  unsupported_media_type: { status: [415], meaning: 'The body is not `application/json` (uploads: `multipart/form-data`), is compressed, or the file type is not accepted.' },
  validation_failed: { status: [422], meaning: 'The body, query or path does not match the schema; `errors` lists the paths (never the values).' },
  weak_password: { status: [422], meaning: 'The password fails the password policy; `reasons` lists why.' },
  invalid_code: { status: [422], meaning: 'A TOTP or recovery code does not have the expected form, or is not valid.' },
  unknown_permission: { status: [422], meaning: 'The permission is not registered (see GET /v1/permissions).' },
  invalid_permission: { status: [422], meaning: 'A permission pattern of a role is not valid; `errors` names it.' },
  webhook_url_refused: { status: [422], meaning: 'A webhook URL is not acceptable: not http(s), carries credentials, plain http in production, or a private, loopback or link-local target (unless BULWARK_WEBHOOK_ALLOW_PRIVATE=1).' },
  reserved_permission: { status: [422], meaning: 'The permission name is built in or uses a resource of Bulwark itself (`users`, `roles`, `clients`, `apikeys`…).' },
  file_rejected: { status: [422], meaning: 'The virus scanner found malware in the upload.' },
  rate_limited: { status: [429], meaning: 'Too many requests; `Retry-After` says when to try again.' },
  mfa_locked: { status: [429], meaning: 'Too many failed second-factor attempts; `Retry-After` says when to try again.' },
  internal: { status: [500], meaning: 'An unexpected failure; the body carries only the request id, the details are in the log.' },
  scanner_unavailable: { status: [503], meaning: 'The virus scanner cannot give a verdict; the upload is refused, try again later.' },
  storage_unavailable: { status: [503], meaning: 'The database cannot be written (disk full, read-only, I/O error, PostgreSQL unreachable); nothing was changed, try again after `Retry-After`.' },
  storage_busy: { status: [503], meaning: 'Another process held the database write lock for longer than `BULWARK_DB_BUSY_RETRY` (on PostgreSQL: a statement ran past `BULWARK_DB_STATEMENT_TIMEOUT`, or a lock or serialization conflict outlasted the retries); nothing was changed, try again after `Retry-After`.' },
} as const satisfies Record<string, { status: readonly number[]; meaning: string }>

/** A problem `code` the server may send. */
export type ErrorCode = keyof typeof ERROR_CODES

/** True for a string that is a registered code. */
export const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_CODES, code)
