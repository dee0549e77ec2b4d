/**
 * What services are handed: the database, clock, logger, derived keys and configuration. Nothing in
 * src/modules imports these as globals, so tests build a whole app on an in-memory database in a millisecond.
 */
import type { Config } from './config'
import type { Db } from './db/client'
import type { Clock } from './lib/clock'
import type { Keys } from './lib/crypto'
import type { Logger } from './lib/logger'

export interface CoreDeps {
  config: Config
  db: Db
  clock: Clock
  logger: Logger
  keys: Keys
}
