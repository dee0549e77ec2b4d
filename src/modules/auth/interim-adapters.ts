/** Interim implementations until the full password policy and mail worker land. */
import type { CoreDeps } from '../../deps'
import { mailOutbox } from '../../db/schema'
import { newId } from '../../lib/ids'
import type { Hasher, Mailer, Policy } from './ports'

export function interimHasher(deps: Pick<CoreDeps, 'config'>): Hasher {
  const opts = { algorithm: 'argon2id' as const, memoryCost: deps.config.password.argon2MemoryKib, timeCost: deps.config.password.argon2Time }
  let dummy: string | undefined
  return {
    hash: (pw) => Bun.password.hash(pw.normalize('NFKC'), opts),
    verify: (pw, h) => Bun.password.verify(pw.normalize('NFKC'), h),
    needsRehash: (h) => !h.includes(`m=${opts.memoryCost},t=${opts.timeCost},`),
    dummyVerify: async (pw) => {
      dummy ??= await Bun.password.hash('dummy-password-for-timing', opts)
      await Bun.password.verify(pw, dummy)
    },
  }
}

export function interimPolicy(deps: Pick<CoreDeps, 'config'>): Policy {
  return {
    check: async (pw) => {
      const n = [...pw.normalize('NFKC')].length
      const r = []
      if (n < deps.config.password.minLength) r.push({ code: 'too_short', message: `Use at least ${deps.config.password.minLength} characters.` })
      if (n > deps.config.password.maxLength) r.push({ code: 'too_long', message: `Use at most ${deps.config.password.maxLength} characters.` })
      return r
    },
  }
}

export function outboxMailer(deps: Pick<CoreDeps, 'db' | 'clock'>): Mailer {
  return {
    send: (m) => {
      const now = deps.clock.now()
      deps.db.insert(mailOutbox).values({ id: newId(), to: m.to, subject: m.subject, text: m.text, status: 'pending', nextAttemptAt: now, createdAt: now }).run()
    },
  }
}

