/** Prints the configuration reference as a Markdown table (pasted into the README; a test keeps them in step). */
import { SETTINGS } from '../src/config'

console.log('| variable | default | meaning |')
console.log('|---|---|---|')
for (const s of SETTINGS) {
  const def = 'default' in s && s.default !== undefined && s.default !== '' ? `\`${s.default}\`` : '(none)'
  console.log(`| \`${s.env}\` | ${def} | ${s.doc.replace(/\|/g, '\\|')} |`)
}
