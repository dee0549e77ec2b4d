/**
 * The API key format, GitHub-style so secret scanners can recognise a leaked key without asking us:
 * `bwk_` + 30 random base62 characters (178 bits) + 6 base62 characters of the CRC32 of those 30
 * (zero-padded), 40 characters in all. The checksum lets a typo or a random string be refused before any
 * database lookup; it adds no secrecy.
 */
import { randomBytes } from 'node:crypto'

export const KEY_PREFIX = 'bwk_'
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const BODY = 30
const CHECK = 6
export const KEY_LENGTH = KEY_PREFIX.length + BODY + CHECK
const SHAPE = new RegExp(`^${KEY_PREFIX}[0-9A-Za-z]{${BODY + CHECK}}$`)

function base62(n: number, width: number): string {
  let out = ''
  for (let i = 0; i < width; i++) {
    out = ALPHABET[n % 62]! + out
    n = Math.floor(n / 62)
  }
  return out
}

const checksum = (body: string) => base62(Bun.hash.crc32(body) >>> 0, CHECK)

/** A new key (unbiased: bytes ≥ 248 are drawn again). */
export function generateKey(): string {
  let body = ''
  while (body.length < BODY) {
    for (const b of randomBytes(BODY * 2)) {
      if (b < 248 && body.length < BODY) body += ALPHABET[b % 62]
    }
  }
  return `${KEY_PREFIX}${body}${checksum(body)}`
}

/** True for a string of the key's shape whose checksum matches (not yet proof that the key exists). */
export function isWellFormedKey(token: string): boolean {
  if (token.length !== KEY_LENGTH || !SHAPE.test(token)) return false
  return checksum(token.slice(KEY_PREFIX.length, KEY_PREFIX.length + BODY)) === token.slice(KEY_PREFIX.length + BODY)
}

/** True when a bearer token is meant as an API key (whether or not it is valid). */
export const looksLikeApiKey = (token: string) => token.startsWith(KEY_PREFIX)

/** The shown part of a key in lists: the prefix and 6 characters. */
export const hintOf = (key: string) => key.slice(0, KEY_PREFIX.length + 6)
