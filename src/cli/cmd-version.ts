/** `holdfast version`: this build's version and what it runs on (restic's `version`). */
import type { Command } from 'commander';
import { createRequire } from 'node:module';
import { globals, honours } from './context.js';

/** The version in package.json. */
export const VERSION = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version;

export function register(program: Command): void {
  honours(program.command('version'), 'json')
    .description('print the version of holdfast and what it runs on')
    .action((_: unknown, cmd: Command) => {
      const g = globals(cmd);
      const line = g.json
        ? JSON.stringify({ message_type: 'version', version: VERSION, node_version: process.version, os: process.platform, arch: process.arch })
        : `holdfast ${VERSION} (node ${process.version}, ${process.platform}/${process.arch})`;
      process.stdout.write(`${line}\n`);
    });
}
