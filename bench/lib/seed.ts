/**
 * Seeding the bench database. A handful of accounts go through the real API (registration hashes their
 * password with the server's own hasher and parameters); the bulk is inserted directly (bench/lib/store.ts:
 * bun:sqlite, or Bun's SQL client on PostgreSQL) in one transaction, every bulk row reusing the ONE password
 * hash the server computed for the first API account, so all accounts share one password and a million rows
 * take seconds instead of days of argon2.
 * Sessions, refresh tokens and access tokens for the read and refresh scenarios are made the way the
 * server makes them: rows inserted directly, refresh tokens stored as hashToken(deriveKey(secret,
 * 'token-hash'), token), access tokens signed with the server's current signing key (decrypted with the
 * key derived from the same BULWARK_SECRET) and the same claims. The project's own src/lib/crypto.ts does it.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto'
import { SignJWT } from 'jose'
import { decrypt, deriveKey, randomToken } from '../../src/lib/crypto'
import { apiEmail, type BenchStore } from './store'

export { ADMINS, BENCH_ROLE, adminEmail, apiEmail, userEmail, type Seeded } from './store'

export const PASSWORD = 'Bench-Quartz-Lantern-47-Meadow!'
export const API_USERS = 5
export const PUBLIC_URL = 'http://127.0.0.1'
export const AUDIENCE = 'bulwark'

async function post(url: string, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await r.text()
  let json: Record<string, unknown> = {}
  try {
    json = JSON.parse(text) as Record<string, unknown>
  } catch {}
  return { status: r.status, json }
}

/** Registers the API accounts and signs one of them in, through the real HTTP API. */
export async function seedThroughApi(url: string): Promise<void> {
  for (let i = 0; i < API_USERS; i++) {
    const r = await post(url, '/v1/auth/register', { email: apiEmail(i), password: PASSWORD, name: `Bench API ${i}` })
    if (r.status !== 201 && r.status !== 409) throw new Error(`register through the API answered ${r.status}: ${JSON.stringify(r.json)}`)
  }
  const login = await post(url, '/v1/auth/login', { email: apiEmail(0), password: PASSWORD })
  if (login.status !== 200 || typeof login.json.accessToken !== 'string') throw new Error(`login through the API answered ${login.status}: ${JSON.stringify(login.json)}`)
}

/** Signs access tokens like the server does (its current key, same claims), valid for `ttlS` seconds. */
export class TokenMinter {
  private constructor(
    private readonly kid: string,
    private readonly alg: string,
    private readonly key: KeyObject,
  ) {}

  static async load(store: BenchStore, secret: string): Promise<TokenMinter> {
    const row = await store.signingKey()
    if (!row) throw new Error('no signing key in the database (did the server start once?)')
    const jwk = JSON.parse(decrypt(deriveKey(secret, 'encryption'), row.enc, `jwk:${row.kid}`)) as Record<string, unknown>
    return new TokenMinter(row.kid, row.alg, createPrivateKey({ key: jwk as never, format: 'jwk' }))
  }

  async mint(sub: string, sid: string, ttlS = 4 * 3600): Promise<string> {
    const iat = Math.floor(Date.now() / 1000)
    return new SignJWT({ sid })
      .setProtectedHeader({ alg: this.alg, kid: this.kid, typ: 'JWT' })
      .setIssuer(PUBLIC_URL)
      .setAudience(AUDIENCE)
      .setSubject(sub)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ttlS)
      .setJti(randomToken(16))
      .sign(this.key)
  }

  /** A session and an access token for each user id. */
  async sessionsWithTokens(store: BenchStore, userIds: string[]): Promise<{ userId: string; token: string }[]> {
    const sids = await store.insertSessions(userIds)
    return Promise.all(userIds.map(async (u, i) => ({ userId: u, token: await this.mint(u, sids[i]!) })))
  }
}
