/**
 * A software WebAuthn authenticator for tests: an ES256 (P-256) key in WebCrypto, attestation `none`,
 * CBOR via @levischuck/tiny-cbor. It produces the JSON a browser would send after
 * navigator.credentials.create()/get(), with knobs to break each check the server must make.
 * References: WebAuthn L3 §6.1 (authenticator data), §6.5.1 (attestation object), §8.7 (none).
 */
import { encodeCBOR, type CBORType } from '@levischuck/tiny-cbor'
import { createHash, randomBytes } from 'node:crypto'

const b64u = (b: Uint8Array | Buffer) => Buffer.from(b).toString('base64url')
const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash('sha256').update(b).digest())

const FLAG_UP = 0x01
const FLAG_UV = 0x04
const FLAG_AT = 0x40

export interface Knobs {
  /** Origin written into clientDataJSON (default: the authenticator's origin). */
  origin?: string
  /** RP id whose hash goes into authenticator data (default: the options' rpId). */
  rpId?: string
  /** User verified flag (default true). */
  uv?: boolean
  /** Signature counter to report (default: the next one). */
  counter?: number
  /** Challenge to sign instead of the one in the options. */
  challenge?: string
  /** Credential id to claim instead of this authenticator's own. */
  credentialId?: string
  /** ceremony type written into clientDataJSON. */
  type?: string
}

interface CreationOptions {
  challenge: string
  rp: { id?: string; name: string }
  user: { id: string; name: string }
}

interface RequestOptions {
  challenge: string
  rpId?: string
}

/** Raw r||s (WebCrypto's ECDSA output) to the ASN.1 DER SEQUENCE WebAuthn requires. */
export function rawToDer(raw: Uint8Array): Uint8Array {
  const int = (b: Uint8Array) => {
    let i = 0
    while (i < b.length - 1 && b[i] === 0) i++
    let v = b.subarray(i)
    if (v[0]! & 0x80) v = new Uint8Array([0, ...v])
    return new Uint8Array([0x02, v.length, ...v])
  }
  const r = int(raw.subarray(0, 32))
  const s = int(raw.subarray(32, 64))
  return new Uint8Array([0x30, r.length + s.length, ...r, ...s])
}

export class SoftAuthenticator {
  readonly credentialId: Uint8Array = new Uint8Array(randomBytes(32))
  counter = 0
  userHandle: string | undefined
  private rpId = ''

  private constructor(
    private readonly keys: CryptoKeyPair,
    readonly origin: string,
  ) {}

  static async create(origin = 'http://localhost:3000'): Promise<SoftAuthenticator> {
    const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as CryptoKeyPair
    return new SoftAuthenticator(keys, origin)
  }

  get id(): string {
    return b64u(this.credentialId)
  }

  private clientData(type: string, challenge: string, origin: string): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ type, challenge, origin, crossOrigin: false }))
  }

  private authData(rpId: string, flags: number, counter: number, attested?: Uint8Array): Uint8Array {
    const c = new Uint8Array(4)
    new DataView(c.buffer).setUint32(0, counter >>> 0)
    return new Uint8Array([...sha256(rpId), flags, ...c, ...(attested ?? [])])
  }

  /** COSE_Key (RFC 9053) of the public key: kty EC2, alg ES256, crv P-256, x, y. */
  private async coseKey(): Promise<Uint8Array> {
    const jwk = await crypto.subtle.exportKey('jwk', this.keys.publicKey)
    const m = new Map<number, number | Uint8Array>([
      [1, 2],
      [3, -7],
      [-1, 1],
      [-2, new Uint8Array(Buffer.from(jwk.x!, 'base64url'))],
      [-3, new Uint8Array(Buffer.from(jwk.y!, 'base64url'))],
    ])
    return encodeCBOR(m)
  }

  /** The response to navigator.credentials.create(options). */
  async register(options: CreationOptions, k: Knobs = {}) {
    this.rpId = options.rp.id ?? ''
    this.userHandle = options.user.id
    const rpId = k.rpId ?? this.rpId
    const idLen = new Uint8Array([this.credentialId.length >> 8, this.credentialId.length & 0xff])
    const attested = new Uint8Array([...new Uint8Array(16), ...idLen, ...this.credentialId, ...(await this.coseKey())])
    const flags = FLAG_UP | (k.uv === false ? 0 : FLAG_UV) | FLAG_AT
    if (k.counter !== undefined) this.counter = k.counter
    const authData = this.authData(rpId, flags, this.counter, attested)
    const attestationObject = encodeCBOR(
      new Map<string, CBORType>([
        ['fmt', 'none'],
        ['attStmt', new Map<string, CBORType>()],
        ['authData', authData],
      ]),
    )
    const clientDataJSON = this.clientData(k.type ?? 'webauthn.create', k.challenge ?? options.challenge, k.origin ?? this.origin)
    const id = k.credentialId ?? this.id
    return {
      id,
      rawId: id,
      type: 'public-key' as const,
      clientExtensionResults: {},
      response: { clientDataJSON: b64u(clientDataJSON), attestationObject: b64u(attestationObject), transports: ['internal'] },
    }
  }

  /** The response to navigator.credentials.get(options); the counter advances by one unless a knob sets it. */
  async assert(options: RequestOptions, k: Knobs = {}) {
    const rpId = k.rpId ?? options.rpId ?? this.rpId
    this.counter = k.counter ?? this.counter + 1
    const flags = FLAG_UP | (k.uv === false ? 0 : FLAG_UV)
    const authData = this.authData(rpId, flags, this.counter)
    const clientDataJSON = this.clientData(k.type ?? 'webauthn.get', k.challenge ?? options.challenge, k.origin ?? this.origin)
    const signed = new Uint8Array([...authData, ...sha256(clientDataJSON)])
    const raw = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, this.keys.privateKey, signed))
    const id = k.credentialId ?? this.id
    return {
      id,
      rawId: id,
      type: 'public-key' as const,
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authData),
        signature: b64u(rawToDer(raw)),
        ...(this.userHandle ? { userHandle: this.userHandle } : {}),
      },
    }
  }
}
