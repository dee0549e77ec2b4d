/**
 * The few human lines a start prints besides the JSON log: where the server listens, its public URL,
 * the docs, and how to create the first owner when there is none. They go to stderr so stdout stays
 * pure NDJSON for log shippers; every fact in them is also in the JSON log.
 */
import type { Running } from '../server'
import { VERSION } from '../version'

export async function bannerLines(running: Pick<Running, 'url' | 'deps'>): Promise<string[]> {
  const { config } = running.deps
  const lines = [
    `bulwark ${VERSION} (${config.env}) listening on ${running.url}`,
    `  public URL  ${config.publicUrl}${config.follows.publicUrl ? '  (follows the listening address; set BULWARK_PUBLIC_URL to the URL clients use)' : ''}`,
    `  API docs    ${config.publicUrl}/docs`,
  ]
  if (await running.deps.rbac.activeOwnerCount() === 0) {
    lines.push(
      '  no owner account yet; create the first one with',
      "              echo 'a long passphrase' | bulwark admin create --email you@example.com",
      '              (or start once with BULWARK_ADMIN_EMAIL and BULWARK_ADMIN_PASSWORD set)',
    )
  }
  return lines
}
