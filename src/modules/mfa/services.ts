/** Builds the MFA services over one set of deps (the composition root calls this once). */
import { MfaLoginService, type MfaLock } from './mfa-login-service'
import type { MfaDeps } from './model'
import { PasskeyService } from './passkey-service'
import { RecoveryService } from './recovery-service'
import { TotpService } from './totp-service'

export interface MfaServices {
  recovery: RecoveryService
  totp: TotpService
  passkeys: PasskeyService
  login: MfaLoginService
}

export function buildMfaServices(deps: MfaDeps, lock?: MfaLock): MfaServices {
  const recovery = new RecoveryService(deps)
  const totp = new TotpService(deps, recovery)
  const passkeys = new PasskeyService(deps, recovery)
  const login = new MfaLoginService(deps, totp, recovery, passkeys, lock)
  return { recovery, totp, passkeys, login }
}
