/** `bulwark keys rotate`: a new current signing key; the previous one stays in the JWKS until its tokens expire. */
import { buildDeps } from '../app'
import type { Command } from './command'
import { configOrExit } from './config-or-exit'

export const keysRotateCommand: Command = {
  name: 'keys rotate',
  summary: 'make a new signing key current; the previous one stays published until its tokens expire',
  run: () => {
    const deps = buildDeps(configOrExit())
    try {
      const r = deps.signer.rotate()
      deps.audit.record({ type: 'key_rotated', outcome: 'success', details: { kid: r.kid, previous: r.previous } }, { userAgent: 'bulwark-cli' })
      process.stdout.write(`new signing key ${r.kid} is current; ${r.previous ?? 'no previous key'} stays published until its tokens expire\n`)
      return 0
    } finally {
      deps.close()
    }
  },
}
