/** Loads the configuration for a command: refusals exit 2 with one line per problem; warnings go to stderr. */
import { ConfigError, configWarnings, loadConfig, type Config } from '../config'
import { CliError } from './command'

export const EXIT_CONFIG = 2

export function configOrExit(opts: { warnings?: boolean } = {}): Config {
  try {
    const c = loadConfig(process.env)
    // `serve` logs its warnings as JSON lines; one-shot commands print them here.
    if (opts.warnings !== false) for (const w of configWarnings(c)) process.stderr.write(`bulwark: warning: ${w}\n`)
    return c
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(['refusing to start:', ...e.problems.map((p) => `  - ${p}`)], EXIT_CONFIG)
    throw e
  }
}
