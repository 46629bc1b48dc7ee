/**
 * Where the password comes from, in restic's order: --password-file,
 * --password-command, HOLDFAST_PASSWORD_FILE, HOLDFAST_PASSWORD_COMMAND,
 * HOLDFAST_PASSWORD, else a prompt on the terminal.
 */
import { readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ExitError, EXIT } from './exit-codes.js';

export interface PasswordOptions {
  passwordFile?: string;
  passwordCommand?: string;
}

function firstLine(s: string): string {
  return s.replace(/\r?\n.*$/s, '');
}

function runCommand(cmd: string): string {
  try {
    return firstLine(execFileSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  } catch (e) {
    throw new ExitError(`password command failed: ${(e as Error).message}`, EXIT.failed);
  }
}

async function prompt(question: string): Promise<string> {
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
async function readPasswordFile(file: string, option: string): Promise<string> {
  try {
    return firstLine(await readFile(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : (e as Error).message;
    throw new ExitError(`cannot read the password file ${file} (${option}): ${why}`, EXIT.failed);
  }
}

/** Reads the password, or fails with a clear message when none is given. */
export async function getPassword(o: PasswordOptions, question = 'enter password for repository: '): Promise<string> {
  let pw: string | undefined;
  const env = process.env;
  if (o.passwordFile) pw = await readPasswordFile(o.passwordFile, '--password-file');
  else if (o.passwordCommand) pw = runCommand(o.passwordCommand);
  else if (env['HOLDFAST_PASSWORD_FILE']) pw = await readPasswordFile(env['HOLDFAST_PASSWORD_FILE'], 'HOLDFAST_PASSWORD_FILE');
  else if (env['HOLDFAST_PASSWORD_COMMAND']) pw = runCommand(env['HOLDFAST_PASSWORD_COMMAND']);
  else if (env['HOLDFAST_PASSWORD'] !== undefined) pw = env['HOLDFAST_PASSWORD'];
  else if (process.stdin.isTTY) pw = await prompt(question);
  if (pw === undefined) throw new ExitError('no password given: use HOLDFAST_PASSWORD, --password-file or --password-command', EXIT.failed);
  if (pw === '') throw new ExitError('empty password refused', EXIT.failed);
  return pw;
}

/** Asks for a new password twice on a terminal, or reads it from a file. */
export async function getNewPassword(file: string | undefined): Promise<string> {
  if (file) {
    const pw = await readPasswordFile(file, '--new-password-file');
    if (pw === '') throw new ExitError('empty password refused', EXIT.failed);
    return pw;
  }
  if (!process.stdin.isTTY) throw new ExitError('no new password given: use --new-password-file', EXIT.failed);
  const a = await prompt('enter new password: ');
  const b = await prompt('enter the new password again: ');
  if (a !== b) throw new ExitError('the passwords do not match', EXIT.failed);
  if (a === '') throw new ExitError('empty password refused', EXIT.failed);
  return a;
}
