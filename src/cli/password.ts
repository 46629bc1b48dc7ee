/**
 * Where the password comes from, in restic's order: --password-file,
 * --password-command, HOLDFAST_PASSWORD_FILE, HOLDFAST_PASSWORD_COMMAND,
 * HOLDFAST_PASSWORD, else a prompt on the terminal.
 *
 * A password is returned as UTF-8 bytes in a buffer of its own, which the
 * caller zeroes once the key is derived (`withPassword`). Read from a file
 * or a command it never becomes a JavaScript string (strings cannot be
 * zeroed); from the environment or a prompt it was one already.
 */
import { readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ExitError, EXIT } from './exit-codes.js';

export interface PasswordOptions {
  passwordFile?: string;
  passwordCommand?: string;
}

/** A copy of the first line of `b` (without its line break); `b` is zeroed. */
function firstLine(b: Buffer): Buffer {
  let end = b.indexOf(0x0a);
  if (end < 0) end = b.length;
  else if (end > 0 && b[end - 1] === 0x0d) end--;
  // Outside the JavaScript heap: a small Buffer.alloc lives in it, and the collector copies such objects, leaving the old bytes behind.
  const line = Buffer.from(new ArrayBuffer(end));
  b.copy(line, 0, 0, end);
  b.fill(0);
  return line;
}

function runCommand(cmd: string, option: string): Buffer {
  try {
    return firstLine(execFileSync('/bin/sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'inherit'] }));
  } catch (e) {
    const { status, signal } = e as { status?: number | null; signal?: string | null };
    const how = signal ? `was killed by ${signal}` : typeof status === 'number' ? `exited with status ${status}` : `could not run: ${(e as Error).message}`;
    throw new ExitError(`the password command ${JSON.stringify(cmd)} (${option}) ${how}`, EXIT.failed);
  }
}

/** Asks `question` on the terminal (stderr) and reads the answer without echoing it. */
export async function prompt(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const out = rl as unknown as { _writeToOutput: (s: string) => void };
  let asked = false;
  out._writeToOutput = (s: string) => {
    if (!asked) {
      process.stderr.write(s);
      asked = true;
    }
  };
  const answer = await new Promise<string>((resolve) => rl.question(question, resolve));
  rl.close();
  process.stderr.write('\n');
  return answer;
}

/** The first line of a password file; a file that cannot be read is a plain error naming it (was a raw ENOENT). */
export async function readPasswordFile(file: string, option: string): Promise<Buffer> {
  try {
    return firstLine(await readFile(file));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : (e as Error).message;
    throw new ExitError(`cannot read the password file ${file} (${option}): ${why}`, EXIT.failed);
  }
}

/**
 * Reads the password, or fails with a clear message when none is given. The
 * caller zeroes it. `from`: the password of the repository copied from
 * (`init --copy-from`), in restic's names: --from-password-file,
 * --from-password-command (given in `o`), HOLDFAST_FROM_PASSWORD_FILE,
 * HOLDFAST_FROM_PASSWORD_COMMAND, HOLDFAST_FROM_PASSWORD.
 */
export async function getPassword(o: PasswordOptions, question = 'enter password for repository: ', from = false): Promise<Buffer> {
  const origin = passwordOrigin(o, from);
  const env = process.env;
  let pw: Buffer | undefined;
  switch (origin) {
    case undefined: throw new ExitError(`no password given${from ? ' for the source repository' : ''}: use ${prefixOf(from)}, ${flagOf(from)}-file or ${flagOf(from)}-command`, EXIT.failed);
    case 'the prompt': pw = Buffer.from(await prompt(question), 'utf8'); break;
    case `${flagOf(from)}-file`: pw = await readPasswordFile(o.passwordFile!, origin); break;
    case `${flagOf(from)}-command`: pw = runCommand(o.passwordCommand!, origin); break;
    case `${prefixOf(from)}_FILE`: pw = await readPasswordFile(env[origin]!, origin); break;
    case `${prefixOf(from)}_COMMAND`: pw = runCommand(env[origin]!, origin); break;
    default: pw = Buffer.from(env[origin]!, 'utf8');
  }
  if (pw.length === 0) throw new ExitError('empty password refused', EXIT.failed);
  return pw;
}

const flagOf = (from: boolean): string => (from ? '--from-password' : '--password');
const prefixOf = (from: boolean): string => (from ? 'HOLDFAST_FROM_PASSWORD' : 'HOLDFAST_PASSWORD');

/**
 * What `getPassword` reads the password from, named as the user gave it
 * (`--from-password-file`, `HOLDFAST_PASSWORD`, …, or "the prompt"), for
 * messages about it; undefined when nothing gives one.
 */
export function passwordOrigin(o: PasswordOptions, from = false): string | undefined {
  const env = process.env;
  const prefix = prefixOf(from);
  if (o.passwordFile) return `${flagOf(from)}-file`;
  if (o.passwordCommand) return `${flagOf(from)}-command`;
  if (env[`${prefix}_FILE`]) return `${prefix}_FILE`;
  if (env[`${prefix}_COMMAND`]) return `${prefix}_COMMAND`;
  if (env[prefix] !== undefined) return prefix;
  return process.stdin.isTTY ? 'the prompt' : undefined;
}

/**
 * Asks for a new password twice on a terminal, or reads it from a file
 * (given as `option`). The caller zeroes it.
 */
export async function getNewPassword(file: string | undefined, option = '--new-password-file'): Promise<Buffer> {
  if (file) {
    const pw = await readPasswordFile(file, option);
    if (pw.length === 0) throw new ExitError('empty password refused', EXIT.failed);
    return pw;
  }
  if (!process.stdin.isTTY) throw new ExitError(`no new password given: use ${option}`, EXIT.failed);
  const a = await prompt('enter new password: ');
  const b = await prompt('enter the new password again: ');
  if (a !== b) throw new ExitError('the passwords do not match', EXIT.failed);
  if (a === '') throw new ExitError('empty password refused', EXIT.failed);
  return Buffer.from(a, 'utf8');
}

/**
 * A secret that is not a repository's (a person's password on a holdfast
 * server, an API token): the first line of `file` (named as `option` in
 * messages), else the first line of stdin when it is not a terminal, else
 * asked with `question` on the terminal. An empty one is refused.
 */
export async function readSecret(file: string | undefined, option: string, question: string): Promise<string> {
  let secret: string;
  if (file !== undefined) {
    const b = await readPasswordFile(file, option);
    secret = b.toString('utf8');
    b.fill(0);
  } else if (process.stdin.isTTY) {
    secret = await prompt(question);
  } else {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const b = firstLine(Buffer.concat(chunks));
    secret = b.toString('utf8');
    b.fill(0);
  }
  if (secret === '') throw new ExitError('empty password refused', EXIT.failed);
  return secret;
}

/** Runs `use` with a password and zeroes the password afterwards, whatever happens. */
export async function withPassword<T>(password: Buffer | Promise<Buffer>, use: (password: Buffer) => Promise<T>): Promise<T> {
  const pw = await password;
  try {
    return await use(pw);
  } finally {
    pw.fill(0);
  }
}
