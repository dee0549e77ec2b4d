/**
 * The command table behind `bulwark`: each command is one entry (name, summary, usage, flags,
 * positional arguments, run). Parsing, `--help`/`-h` and usage errors are handled here for all of them,
 * so a command never starts work when asked for help, and an unknown flag is always exit 64.
 * Exit codes follow sysexits(3) where one fits: 64 usage error.
 */
import { VERSION } from '../version'

export interface Flag {
  /** Long name without dashes: `email` for `--email`. */
  name: string
  /** Placeholder of the value (`E`); absent for a boolean switch. */
  value?: string
  required?: boolean
  /** May be given more than once; every value lands in `Input.lists[name]`. */
  repeatable?: boolean
  doc: string
}

export interface Arg {
  name: string
  doc: string
  optional?: boolean
}

export interface Input {
  flags: Record<string, string | true>
  /** Every value of a repeatable flag, in order. */
  lists: Record<string, string[]>
  args: string[]
}

export interface Command {
  /** The words that select it, space-separated: `keys rotate`. */
  name: string
  /** One line for `bulwark --help`. */
  summary: string
  /** Paragraphs after the usage line of `bulwark <name> --help`. */
  details?: string
  flags?: Flag[]
  args?: Arg[]
  /** Resolves to the exit code; `undefined` keeps the process running (a server). */
  run(input: Input): Promise<number | undefined> | number | undefined
}

export const EXIT_USAGE = 64

/** A refusal the CLI prints (one `bulwark: ` line each on stderr) before exiting with `code`. */
export class CliError extends Error {
  constructor(
    readonly lines: string[],
    readonly code: number,
  ) {
    super(lines.join('; '))
  }
}

/** Thrown for a usage problem: one line, exit 64. */
export const usageError = (line: string) => new CliError([line], EXIT_USAGE)

export function usageLine(c: Command): string {
  const flags = (c.flags ?? []).map((f) => {
    const s = f.value ? `--${f.name} ${f.value}` : `--${f.name}`
    return f.required ? s : `[${s}]`
  })
  const args = (c.args ?? []).map((a) => (a.optional ? `[${a.name}]` : a.name))
  return ['bulwark', c.name, ...flags, ...args].join(' ')
}

/** `bulwark <name> --help`. */
export function commandHelp(c: Command): string {
  const rows: [string, string][] = [
    ...(c.args ?? []).map((a): [string, string] => [a.name, a.doc]),
    ...(c.flags ?? []).map((f): [string, string] => [f.value ? `--${f.name} ${f.value}` : `--${f.name}`, f.required ? `${f.doc} (required)` : f.doc]),
    ['-h, --help', 'print this help and exit'],
  ]
  const width = Math.max(...rows.map(([k]) => k.length)) + 2
  return [`Usage: ${usageLine(c)}`, '', c.summary, ...(c.details ? ['', c.details] : []), '', 'Options:', ...rows.map(([k, v]) => `  ${k.padEnd(width)}${v}`), ''].join('\n')
}

/** `bulwark --help`. */
export function mainHelp(commands: readonly Command[]): string {
  const rows = commands.map((c) => [c.name, c.summary] as const)
  const width = Math.max(...rows.map(([k]) => k.length), 'serve (default)'.length) + 2
  return [
    `bulwark ${VERSION}: authentication and access-control server`,
    '',
    'Usage: bulwark [command] [options]',
    '',
    'Commands:',
    ...rows.map(([k, v]) => `  ${(k === 'serve' ? 'serve (default)' : k).padEnd(width)}${v}`),
    '',
    'Options:',
    `  ${'-h, --help'.padEnd(width)}this text; \`bulwark <command> --help\` for one command`,
    `  ${'-v, --version'.padEnd(width)}print the version`,
    '',
    'Configuration comes from BULWARK_* environment variables (each also as BULWARK_*_FILE);',
    'see the README or `bulwark config check`.',
    '',
  ].join('\n')
}

const isHelp = (a: string) => a === '--help' || a === '-h'

/** Parses the words after the command name against its flags and arguments. */
export function parseInput(c: Command, rest: string[]): Input {
  const flags: Record<string, string | true> = {}
  const lists: Record<string, string[]> = {}
  const args: string[] = []
  const see = `see \`bulwark ${c.name} --help\``
  for (let i = 0; i < rest.length; i++) {
    const word = rest[i]!
    if (word === '--') {
      args.push(...rest.slice(i + 1))
      break
    }
    if (!word.startsWith('-') || word === '-') {
      args.push(word)
      continue
    }
    const eq = word.indexOf('=')
    const name = word.startsWith('--') ? word.slice(2, eq > 0 ? eq : undefined) : ''
    const flag = (c.flags ?? []).find((f) => f.name === name)
    if (!flag) throw usageError(`unknown option ${word.slice(0, 60).split('=')[0]} for \`bulwark ${c.name}\`; ${see}`)
    if (!flag.value) {
      if (eq > 0) throw usageError(`--${flag.name} takes no value; ${see}`)
      flags[flag.name] = true
      continue
    }
    const value = eq > 0 ? word.slice(eq + 1) : rest[++i]
    if (value === undefined || value === '') throw usageError(`--${flag.name} needs a value (${flag.value}); ${see}`)
    if (flags[flag.name] !== undefined && !flag.repeatable) throw usageError(`--${flag.name} is given twice; ${see}`)
    flags[flag.name] = value
    ;(lists[flag.name] ??= []).push(value)
  }
  for (const f of c.flags ?? []) if (f.required && flags[f.name] === undefined) throw usageError(`--${f.name} ${f.value ?? ''} is required; usage: ${usageLine(c)}`.replace(' ;', ';'))
  const expected = c.args ?? []
  const needed = expected.filter((a) => !a.optional).length
  if (args.length < needed) throw usageError(`missing ${expected[args.length]!.name}; usage: ${usageLine(c)}`)
  if (args.length > expected.length) throw usageError(`unexpected argument "${args[expected.length]!.slice(0, 60)}"; usage: ${usageLine(c)}`)
  return { flags, lists, args }
}

/** Picks the command from argv (longest name that matches its first words) and runs it. */
export async function runCli(commands: readonly Command[], argv: string[], out: (text: string) => void = (t) => process.stdout.write(t)): Promise<number | undefined> {
  const first = argv[0]
  if (first === '--version' || first === '-v' || first === 'version') {
    out(`${VERSION}\n`)
    return 0
  }
  if (first !== undefined && (isHelp(first) || first === 'help')) {
    const topic = argv.slice(1).join(' ')
    const c = topic ? commands.find((x) => x.name === topic) : undefined
    if (topic && !c) throw usageError(`unknown command "${topic.slice(0, 60)}"; see \`bulwark --help\``)
    out(c ? commandHelp(c) : mainHelp(commands))
    return 0
  }
  let command: Command | undefined
  let rest = argv
  if (first === undefined || first.startsWith('-')) command = commands.find((c) => c.name === 'serve')
  else {
    const matches = commands.filter((c) => {
      const words = c.name.split(' ')
      return words.every((w, i) => argv[i] === w)
    })
    command = matches.sort((a, b) => b.name.length - a.name.length)[0]
    if (!command) {
      const group = commands.filter((c) => c.name.split(' ')[0] === first)
      const sub = argv[1] === undefined || argv[1].startsWith('-') ? '' : ` ${argv[1]}`
      if (group.length > 0 && argv.slice(1).some(isHelp)) {
        out(group.map(commandHelp).join('\n'))
        return 0
      }
      if (group.length > 0) throw usageError(`unknown command "${first}${sub}"; try ${group.map((c) => `\`bulwark ${c.name}\``).join(', ')}`.slice(0, 300))
      throw usageError(`unknown command "${first.slice(0, 60)}"; see \`bulwark --help\``)
    }
    rest = argv.slice(command.name.split(' ').length)
  }
  if (!command) throw usageError('no serve command')
  // Help wins over everything else on the line, unknown flags included: asking for help never does anything.
  const end = rest.indexOf('--')
  if ((end < 0 ? rest : rest.slice(0, end)).some(isHelp)) {
    out(commandHelp(command))
    return 0
  }
  // The binary starts with JIT tier-up thresholds raised for start-up (package.json's build, src/server.ts);
  // `serve` resets them once listening, every other command (db copy, audit verify: per-row loops) at once.
  if (command.name !== 'serve') Bun.unsafe.setJITPolicy(1)
  return await command.run(parseInput(command, rest))
}
