/** Time-ordered ids (UUIDv7): unique across instances and naturally sorted for keyset pagination. */
export const newId = (): string => Bun.randomUUIDv7()

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** True for a canonical lower-case UUID, the only id shape Bulwark issues. */
export const isId = (s: string): boolean => UUID.test(s)
