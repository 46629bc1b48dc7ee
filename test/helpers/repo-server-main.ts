/**
 * The process `startRepoServer` (repo-server.ts) runs: the test repository
 * server of repo-server-app.ts on 127.0.0.1, with the options given as JSON
 * in argv[2]. It prints `{"port":N}` once listening. A process of its own so
 * that a test can kill it with SIGKILL in the middle of an upload.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';

import { buildRepoServer, type RepoServerAppOptions } from './repo-server-app.js';

/** What `startRepoServer` passes. */
export interface RepoServerMainOptions extends Omit<RepoServerAppOptions, 'key' | 'cert'> {
  readonly port: number;
  readonly keyFile: string;
  readonly certFile: string;
}

const arg = process.argv[2];
// `node --test dist/test/` runs every file below test/, this one too: with no options there is nothing to start.
if (arg !== undefined) {
  const o = JSON.parse(arg) as RepoServerMainOptions;
  const app = await buildRepoServer({ ...o, key: readFileSync(o.keyFile, 'utf8'), cert: readFileSync(o.certFile, 'utf8') });
  await app.listen({ host: '127.0.0.1', port: o.port });
  process.stdout.write(`${JSON.stringify({ port: (app.server.address() as AddressInfo).port })}\n`);
  // The test process holds the other end of stdin: when it goes, so does this one.
  process.stdin.on('end', () => process.exit(0)).resume();
}
