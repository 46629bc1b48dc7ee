/**
 * The process `startServerNode` (server-node.ts) runs: `startServer` (the
 * library behind `holdfast server`) with the options given as JSON in
 * argv[2], which may set what the command does not let a user set (the
 * server jobs' lease, the minimum grace). It prints one JSON line once
 * listening: its port, fingerprint and first admin. A process of its own so
 * that a test can kill a node with SIGKILL while it runs jobs.
 */
import { startServer, type BackupServerOptions } from '../../src/server/backup-server.js';

const arg = process.argv[2];
// `node --test dist/test/` runs every file below test/, this one too: with no options there is nothing to start.
if (arg !== undefined) {
  const server = await startServer(JSON.parse(arg) as BackupServerOptions);
  process.stdout.write(`${JSON.stringify({ port: server.port, fingerprint: server.fingerprint, firstAdmin: server.firstAdmin ?? null })}\n`);
  const stop = (): void => void server.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  // The test process holds the other end of stdin: when it goes, so does this one.
  process.stdin.on('end', stop).resume();
}
