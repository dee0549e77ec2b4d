/**
 * Access-token signing, per token: jose's SignJWT (WebCrypto) against the JWS Compact Serialization written
 * out with node:crypto's one-shot sign (src/modules/keys/service.ts compactJws), both Ed25519, same claims.
 * `taskset -c 1 bun bench/sign.ts`. Not a test: nothing asserts time.
 */
import { createPrivateKey } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { compactJws } from '../src/modules/keys/service'

const N = 5000
const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true })
const keyObject = createPrivateKey({ key: (await exportJWK(privateKey)) as never, format: 'jwk' })
const claims = { roles: ['user'], sid: '01JDX8K3M5N7P9Q1R3S5T7V9WX' }
let t = performance.now()
for (let i = 0; i < N; i++)
  await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: 'k1', typ: 'JWT' }).setIssuer('https://auth.example.com').setAudience('bulwark').setSubject('u').setIssuedAt(1).setExpirationTime(2).setJti(`jti-${i}`).sign(privateKey)
console.log(`jose SignJWT: ${(((performance.now() - t) * 1000) / N).toFixed(1)} µs a token`)
t = performance.now()
for (let i = 0; i < N; i++) compactJws('EdDSA', 'k1', 'JWT', { ...claims, iss: 'https://auth.example.com', aud: 'bulwark', sub: 'u', iat: 1, exp: 2, jti: `jti-${i}` }, keyObject)
console.log(`node:crypto compact JWS: ${(((performance.now() - t) * 1000) / N).toFixed(1)} µs a token`)
