/**
 * The OAuth endpoints: token (RFC 6749 §4.4), introspection (RFC 7662), revocation (RFC 7009), and the
 * metadata documents (RFC 8414, OpenID Connect Discovery 1.0). Bodies are `application/x-www-form-urlencoded`
 * (parsed strictly by src/plugins/body-parser.ts on these paths only); errors are the RFC 6749 §5.2 JSON shape.
 */
import { Elysia, t } from 'elysia'
import { errors, JsonInteger } from '../../lib/schemas'
import type { FormBody, OAuthService } from './service'

/** The form parameters, all optional strings: the service answers `invalid_request` itself (RFC 6749 §5.2). */
const Form = (props: Record<string, string>) =>
  t.Object(Object.fromEntries(Object.entries(props).map(([k, d]) => [k, t.Optional(t.String({ description: d }))])), { additionalProperties: true })

const CLIENT_AUTH = {
  client_id: 'client_secret_post / private_key_jwt: the client id',
  client_secret: 'client_secret_post: the client secret (or use HTTP Basic, RFC 6749 §2.3.1)',
  client_assertion_type: 'private_key_jwt: urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  client_assertion: 'private_key_jwt: the signed JWT (RFC 7523 §2.2)',
}

export const OAuthErrorSchema = t.Object(
  {
    error: t.Union(['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope', 'unsupported_token_type', 'server_error'].map((e) => t.Literal(e))),
    error_description: t.Optional(t.String()),
  },
  { description: 'RFC 6749 §5.2 error response' },
)

const oauthErrors = { 400: OAuthErrorSchema, 401: OAuthErrorSchema }

const IntrospectionSchema = t.Object({
  active: t.Boolean(),
  sub: t.Optional(t.String()),
  client_id: t.Optional(t.String()),
  scope: t.Optional(t.String()),
  exp: t.Optional(JsonInteger()),
  iat: t.Optional(JsonInteger()),
  sid: t.Optional(t.String()),
  token_type: t.Optional(t.String()),
  iss: t.Optional(t.String()),
  aud: t.Optional(t.String()),
  key_id: t.Optional(t.String({ description: 'the API key id, for token_type api_key (an RFC 7662 §2.2 extension)' })),
})

const noStore = (set: { headers: Record<string, unknown> }) => {
  set.headers['cache-control'] = 'no-store'
  set.headers.pragma = 'no-cache'
}

const Metadata = t.Record(t.String(), t.Unknown(), { description: 'Authorization server metadata' })

export function oauthController(oauth: OAuthService) {
  return new Elysia({ name: 'oauth', detail: { tags: ['oauth'] } })
    .post(
      '/oauth/token',
      async ({ body, request, set }) => {
        noStore(set)
        return await oauth.token(request.headers.get('authorization'), (body ?? {}) as FormBody)
      },
      {
        parse: 'urlencoded',
        body: Form({ grant_type: 'client_credentials', scope: 'space-separated permissions (default: all the client holds)', ...CLIENT_AUTH }),
        response: {
          200: t.Object({ access_token: t.String(), token_type: t.Literal('Bearer'), expires_in: JsonInteger(), scope: t.String() }),
          ...oauthErrors,
          ...errors(422),
        },
        detail: { summary: 'Client-credentials grant (RFC 6749 §4.4): an RFC 9068 access token for the authenticated client' },
      },
    )
    .post(
      '/oauth/introspect',
      async ({ body, request, set }) => {
        noStore(set)
        return await oauth.introspect(request.headers.get('authorization'), (body ?? {}) as FormBody)
      },
      {
        parse: 'urlencoded',
        body: Form({ token: 'the token to introspect', token_type_hint: 'access_token or refresh_token', ...CLIENT_AUTH }),
        response: { 200: IntrospectionSchema, ...oauthErrors, ...errors(422) },
        detail: { summary: 'Token introspection (RFC 7662): is this access or refresh token active, and whose is it?' },
      },
    )
    .post(
      '/oauth/revoke',
      async ({ body, request, set }) => {
        noStore(set)
        await oauth.revoke(request.headers.get('authorization'), (body ?? {}) as FormBody)
        return {}
      },
      {
        parse: 'urlencoded',
        body: Form({ token: 'the token to revoke', token_type_hint: 'refresh_token or access_token', ...CLIENT_AUTH }),
        response: { 200: t.Object({}, { description: 'Revoked, or not a token this server knows (RFC 7009 §2.2)' }), ...oauthErrors, ...errors(422) },
        detail: { summary: 'Token revocation (RFC 7009): a refresh token or user access token ends its session' },
      },
    )
    .get('/.well-known/oauth-authorization-server', () => oauth.metadata(false), {
      response: { 200: Metadata },
      detail: { summary: 'Authorization server metadata (RFC 8414)' },
    })
    .get('/.well-known/openid-configuration', () => oauth.metadata(true), {
      response: { 200: Metadata },
      detail: { summary: 'The same as OpenID Provider metadata (no authorization endpoint: see README)' },
    })
}
