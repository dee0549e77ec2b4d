/** Prints the configuration reference as a Markdown table (pasted into the README; a test keeps them in step). */
import { SETTINGS } from '../src/config'

console.log('| variable | default | meaning |')
console.log('|---|---|---|')
for (const s of SETTINGS) {
  let def = 'default' in s && s.default !== undefined && s.default !== '' ? `\`${s.default}\`` : '(none)'
  if ('profiles' in s && s.profiles) def += ` (${Object.entries(s.profiles).map(([env, v]) => `${env}: \`${v}\``).join(', ')})`
  console.log(`| \`${s.env}\` | ${def} | ${s.doc.replace(/\|/g, '\\|')} |`)
}
