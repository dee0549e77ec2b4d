/**
 * Writes src/lib/common-passwords.txt: the most common passwords of zxcvbn-ts's `passwords-common`
 * dictionary (ordered by frequency) that are at least 8 code points long, the shortest minimum length
 * Bulwark can be configured to; shorter ones are refused by the length rule anyway.
 * Run: `bun run scripts/common-passwords.ts`
 */
import { dictionary } from '@zxcvbn-ts/language-common'
import { join } from 'node:path'

const COUNT = 5000
const list = dictionary['passwords-common'].filter((p) => [...p.normalize('NFKC')].length >= 8).slice(0, COUNT)
const header = `# The ${list.length} most common passwords of 8+ characters, from @zxcvbn-ts/language-common; regenerate with scripts/common-passwords.ts\n`
await Bun.write(join(import.meta.dir, '..', 'src', 'lib', 'common-passwords.txt'), header + list.map((p) => p.toLowerCase()).join('\n') + '\n')
console.log(`wrote ${list.length} passwords`)
