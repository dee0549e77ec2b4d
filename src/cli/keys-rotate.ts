/** `bulwark keys rotate`: a new current signing key; the previous one stays in the JWKS until its tokens expire. */
import { buildDeps } from '../app'
import type { Command } from './command'
import { configOrExit } from './config-or-exit'

export const keysRotateCommand: Command = {
  name: 'keys rotate',
  summary: 'make a new signing key current; the previous one stays published until its tokens expire',
  details:
    'The previous key stays in the JWKS and keeps verifying for one access-token lifetime plus a minute, then its tokens are refused.\n' +
    'Running servers on the same database pick the new key up within a few seconds; no restart is needed.\n' +
    'BULWARK_KEY_ROTATION_INTERVAL does the same on a schedule.',
  run: async () => {
    const deps = await buildDeps(configOrExit())
    try {
      const r = await deps.signer.rotate()
      await deps.audit.record({ type: 'key_rotated', outcome: 'success', details: { kid: r.kid, previous: r.previous } }, { userAgent: 'bulwark-cli' })
      process.stdout.write(`new signing key ${r.kid} is current; ${r.previous ?? 'no previous key'} stays published until its tokens expire\n`)
      return 0
    } finally {
      deps.close()
    }
  },
}
