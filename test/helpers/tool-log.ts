/**
 * Watches how holdfast runs the tools it calls: a folder of wrapper scripts,
 * put first on the PATH of the command under test, each of which writes its
 * arguments (and the mode of a credentials file it was given, in
 * PGPASSFILE or --defaults-extra-file=) to a log before it runs the real
 * tool. A test then reads every command line the tools were given, which
 * is what `ps` would have shown to every user of the machine.
 */
import { execFile } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The wrapped tools and what they were given. */
export interface ToolLog {
  /** The environment's PATH for the command under test: the wrappers first. */
  readonly path: string;
  /** Every call so far: its argv (the tool's name first). */
  calls(): Promise<string[][]>;
  /** Every credentials file the calls were given: its path and its mode when the tool started ("600"). */
  secrets(): Promise<{ path: string; mode: string }[]>;
}

/** Writes wrappers for `tools` into `dir` (an existing, empty folder). */
export async function wrapTools(dir: string, tools: readonly string[]): Promise<ToolLog> {
  const log = join(dir, 'calls.log');
  await writeFile(log, '');
  for (const tool of tools) {
    const real = (await run('sh', ['-c', `command -v ${tool}`])).stdout.trim();
    const script = `#!/bin/sh
{ printf 'CALL'; printf '\\t%s' "${tool}" "$@"; printf '\\n'; } >> '${log}'
[ -n "$PGPASSFILE" ] && stat -c 'SECRET\t%a\t%n' "$PGPASSFILE" >> '${log}'
for a in "$@"; do
  case "$a" in --defaults-extra-file=*) stat -c 'SECRET\t%a\t%n' "\${a#--defaults-extra-file=}" >> '${log}';; esac
done
exec '${real}' "$@"
`;
    await writeFile(join(dir, tool), script);
    await chmod(join(dir, tool), 0o755);
  }
  const lines = async (kind: string): Promise<string[][]> => (await readFile(log, 'utf8')).split('\n').filter((l) => l.startsWith(`${kind}\t`)).map((l) => l.split('\t').slice(1));
  return {
    path: `${dir}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    calls: () => lines('CALL'),
    secrets: async () => (await lines('SECRET')).map(([mode, path]) => ({ mode: mode!, path: path! })),
  };
}
