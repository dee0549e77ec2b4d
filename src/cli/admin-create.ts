/** `bulwark admin create --email E`: an owner account, the password from stdin (or a prompt on a terminal). */
import { buildDeps } from '../app'
import { CliError, EXIT_USAGE, type Command } from './command'
import { configOrExit } from './config-or-exit'

/** Reads a password from stdin (piped) or prompts for it on a terminal. */
async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) {
    const answer = prompt('Password for the new owner:')
    if (!answer) throw new CliError(['no password given'], EXIT_USAGE)
    return answer
  }
  const text = await Bun.stdin.text()
  const pw = text.replace(/\r?\n$/, '')
  if (!pw) throw new CliError(['no password on stdin'], EXIT_USAGE)
  return pw
}

export const adminCreateCommand: Command = {
  name: 'admin create',
  summary: 'create an owner account; the password is read from stdin (or prompted for)',
  details: "Example: echo 'a long passphrase' | bulwark admin create --email you@example.com",
  flags: [{ name: 'email', value: 'E', required: true, doc: 'email address of the new owner' }],
  run: async ({ flags }) => {
    const email = String(flags.email)
    const c = configOrExit()
    const password = await readPassword()
    const deps = await buildDeps(c)
    try {
      const user = await deps.auth.createOwner(email, password, { userAgent: 'bulwark-cli' })
      process.stdout.write(`created owner ${user.email} (${user.id})\n`)
      return 0
    } catch (e) {
      const err = e as { code?: string; detail?: string; extra?: { fields?: { reasons?: { message: string }[] } } }
      const reasons = err.extra?.fields?.reasons?.map((r) => r.message) ?? []
      throw new CliError([err.detail ?? String(e), ...reasons], 1)
    } finally {
      deps.close()
    }
  },
}
