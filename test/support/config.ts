/** Shared configuration fixtures: a strong secret, a production environment that loads, and the problems a config gives. */
import { ConfigError, loadConfig } from '../../src/config'

export const GOOD_SECRET = 'k3J9x!Qm2Lr8Vt5Pz1Wc7Yb4Nd6Hf0Gs-aE_uR'

/** The smallest production environment that is accepted. */
export const PROD_ENV: Readonly<Record<string, string>> = {
  BULWARK_ENV: 'production',
  BULWARK_SECRET: GOOD_SECRET,
  BULWARK_PUBLIC_URL: 'https://auth.example.com',
  BULWARK_CLAMD: '127.0.0.1:3310',
  BULWARK_METRICS_TOKEN: 'metrics-token-0123456789abcdef',
}

/** The refusals `loadConfig` gives for an environment (empty when it loads). */
export function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env)
    return []
  } catch (e) {
    if (e instanceof ConfigError) return e.problems
    throw e
  }
}
