/**
 * `bulwark keys rotate`: makes a new signing key current. Safe while servers run: every instance on the
 * database follows within seconds (src/modules/keys/service.ts) and keeps the old key for the overlap.
 */
import { buildDeps } from '../app'
import { ConfigError, loadConfig, type Config } from '../config'

export const KEYS_HELP = `Usage: bulwark keys rotate

Makes a new signing key current. The previous key stays in the JWKS and keeps verifying for one
access-token lifetime plus a minute, then its tokens are refused. Running servers on the same database
pick the new key up within a few seconds; no restart is needed. BULWARK_KEY_ROTATION_INTERVAL does the
same on a schedule.
`

const err = (line: string) => process.stderr.write(`bulwark: ${line}\n`)

/** Runs `bulwark keys …`; returns the exit code. */
export async function keysCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(KEYS_HELP)
    return 0
  }
  if (args[0] !== 'rotate' || args.length > 1) return (err('usage: bulwark keys rotate'), 64)
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    err('refusing to start:')
    for (const p of e.problems) err(`  - ${p}`)
    return 2
  }
  const deps = buildDeps(config)
  try {
    const r = deps.signer.rotate()
    deps.audit.record({ type: 'key_rotated', outcome: 'success', details: { kid: r.kid, previous: r.previous } }, { userAgent: 'bulwark-cli' })
    process.stdout.write(`new signing key ${r.kid} is current; ${r.previous ?? 'no previous key'} stays published until its tokens expire\n`)
  } finally {
    deps.close()
  }
  return 0
}
