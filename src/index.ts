#!/usr/bin/env bun
/**
 * The single binary's command line. Every command is one entry of COMMANDS (src/cli/command.ts says
 * what an entry holds); `--help`/`-h`, unknown flags (exit 64) and `bulwark --help` come from the table.
 * Exit codes: 2 configuration refused, 3 database newer than this binary, 4 BULWARK_SECRET does not open the
 * database, 64 usage, 1 cannot listen.
 */
import { adminCreateCommand } from './cli/admin-create'
import { auditExportCommand, auditVerifyCommand } from './cli/audit'
import { backupCmd } from './cli/backup'
import { CliError, runCli, type Command } from './cli/command'
import { configCheckCommand } from './cli/config-check'
import { dbCopyCommand } from './cli/db-copy'
import { keysRotateCommand } from './cli/keys-rotate'
import { migrateCommand } from './cli/migrate'
import { secretRotateCommand } from './cli/secret'
import { serveCommand } from './cli/serve'
import { SECRET_MISMATCH_EXIT, SecretMismatchError } from './modules/keys/secret'

/** In the order `bulwark --help` lists them. */
export const COMMANDS: readonly Command[] = [serveCommand, migrateCommand, configCheckCommand, adminCreateCommand, keysRotateCommand, secretRotateCommand, backupCmd, auditVerifyCommand, auditExportCommand, dbCopyCommand]

try {
  const code = await runCli(COMMANDS, process.argv.slice(2))
  if (code !== undefined) process.exitCode = code
} catch (e) {
  if (e instanceof SecretMismatchError) {
    process.stderr.write(`bulwark: refusing to start: ${e.message}\n`)
    process.exit(SECRET_MISMATCH_EXIT)
  }
  if (!(e instanceof CliError)) throw e
  for (const l of e.lines) process.stderr.write(`bulwark: ${l}\n`)
  process.exit(e.code)
}
