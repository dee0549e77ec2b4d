/** `bulwark config check`: the effective configuration (secrets masked) and whether it would start. */
import { ConfigError, configWarnings, describeConfig, loadConfig } from '../config'
import { CliError, type Command } from './command'
import { EXIT_CONFIG } from './config-or-exit'

export const configCheckCommand: Command = {
  name: 'config check',
  summary: 'print the effective configuration (secrets masked) and whether it is valid',
  details: 'Reads the same BULWARK_* variables as `serve`; exits 2 with one line per problem when the configuration would be refused.',
  run: () => {
    for (const line of describeConfig(process.env)) process.stdout.write(`${line}\n`)
    try {
      const c = loadConfig(process.env)
      for (const w of configWarnings(c)) process.stdout.write(`warning: ${w}\n`)
      process.stdout.write(`configuration is valid for ${c.env}\n`)
      return 0
    } catch (e) {
      if (e instanceof ConfigError) throw new CliError(['configuration is NOT valid:', ...e.problems.map((p) => `  - ${p}`)], EXIT_CONFIG)
      throw e
    }
  },
}
