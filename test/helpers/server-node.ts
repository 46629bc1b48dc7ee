/**
 * A server node in a process of its own (server-node-main.ts), for the tests
 * of several nodes on one database and one bucket: started with
 * `startServer`'s options, stopped gently or killed.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackupServerOptions } from '../../src/server/backup-server.js';
import { startChild, type ListeningChild } from './listening-child.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), 'server-node-main.js');

/** A running node. */
export interface ServerNode extends ListeningChild {
  readonly dataDir: string;
  /** Its certificate's PEM. */
  readonly cert: string;
  readonly fingerprint: string;
  /** Its first admin, when this start made the account (the first node's). */
  readonly firstAdmin: { readonly name: string; readonly password: string } | null;
  /** Its node id (server.json's `node`). */
  readonly node: string;
}

/** Starts a node on 127.0.0.1 (any port) with `opts` (its `dataDir` its own). */
export async function startServerNode(opts: Omit<BackupServerOptions, 'listen' | 'logStream' | 'clock' | 'wrapSafeBackend'>): Promise<ServerNode> {
  const child = await startChild([MAIN, JSON.stringify({ ...opts, listen: '127.0.0.1:0' })], `server node ${opts.dataDir}`, (out) => {
    const line = /^(\{.*\})\n/.exec(out)?.[1];
    return line ? JSON.parse(line) as { port: number; fingerprint: string; firstAdmin: ServerNode['firstAdmin'] } : undefined;
  });
  const settings = JSON.parse(await readFile(join(opts.dataDir, 'server.json'), 'utf8')) as { node: string };
  return {
    ...child, dataDir: opts.dataDir, cert: await readFile(join(opts.dataDir, 'tls', 'cert.pem'), 'utf8'),
    fingerprint: child.ready.fingerprint, firstAdmin: child.ready.firstAdmin, node: settings.node,
  };
}
