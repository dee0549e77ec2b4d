// A resource server in a few lines: verify the JWT locally (jose), then ask introspection whether it is still active.
import { createRemoteJWKSet, jwtVerify } from 'jose'

export function resourceServer(opts: { issuer: string; audience: string; clientId: string; clientSecret: string }) {
  const jwks = createRemoteJWKSet(new URL('/.well-known/jwks.json', opts.issuer))
  const basic = `Basic ${btoa(`${encodeURIComponent(opts.clientId)}:${encodeURIComponent(opts.clientSecret)}`)}`
  return Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const token = req.headers.get('authorization')?.replace(/^Bearer /i, '') ?? ''
      try {
        const { payload } = await jwtVerify(token, jwks, { issuer: opts.issuer, audience: opts.audience })
        // The signature says who; introspection says whether the session still stands (logout, disabled user).
        const r = await fetch(new URL('/oauth/introspect', opts.issuer), {
          method: 'POST',
          headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token }),
        })
        const { active } = (await r.json()) as { active: boolean }
        if (!active) return new Response('token no longer active', { status: 401 })
        return Response.json({ hello: payload.sub })
      } catch {
        return new Response('invalid token', { status: 401 })
      }
    },
  })
}
