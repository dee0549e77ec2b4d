// A service client: discovery, a client-credentials token, then a call to the Bulwark API (openid-client v6).
import * as client from 'openid-client'

export async function serviceClient(issuer: string, clientId: string, clientSecret: string) {
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.ClientSecretBasic(clientSecret), {
    // Only for a local http:// issuer; drop this line in production (https).
    execute: issuer.startsWith('http://') ? [client.allowInsecureRequests] : [],
  })
  const tokens = await client.clientCredentialsGrant(config, { scope: 'authz:check' })
  const res = await fetch(new URL('/v1/authz/check', issuer), {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ userId: 'some-user-id', permission: 'users:read' }),
  })
  return { config, tokens, check: { status: res.status, body: await res.json() } }
}
