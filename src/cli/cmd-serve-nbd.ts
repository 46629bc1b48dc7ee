/**
 * `holdfast serve-nbd SNAP [--listen HOST:PORT]`: exports an image snapshot,
 * read-only, over NBD until SIGINT/SIGTERM, so that `qemu-img convert
 * nbd://HOST:PORT out.qcow2` turns a backup into a VM disk and `nbdcopy`
 * streams it anywhere. Only the blocks clients read are fetched from the
 * repository. Holds a shared repository lock while serving, so that an
 * exclusive job (prune) does not remove blocks from under the clients.
 */
import type { Command } from 'commander';
import { openImageSnapshot } from '../jobs/image/image-reader.js';
import { NbdServer } from '../server-nbd/nbd-server.js';
import { formatBytes, globals, longReadLock, openRepo, say, warn } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { untilInterrupted } from './interrupt.js';
import { localIso } from '../core/local-time.js';
import { findSnapshot, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';

export const DEFAULT_LISTEN = '127.0.0.1:10809';

/** Parses HOST:PORT (IPv6 as [ADDR]:PORT). */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ExitError(`--listen wants HOST:PORT (e.g. 127.0.0.1:10809 or [::1]:10809), got "${s}"`, EXIT.usage);
  return { host: (m[1] ?? m[2])!, port };
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\./.test(host);

interface ServeFlags extends SnapshotFilter {
  listen: string;
  verbose?: boolean;
}

export function register(program: Command): void {
  withFilterOptions(program.command('serve-nbd'))
    .description('export an image snapshot read-only over NBD (for qemu-img, nbdcopy, nbd-client)')
    .argument('<snapshot>', 'snapshot id, id prefix, or "latest"')
    .option('--listen <host:port>', 'address to listen on', DEFAULT_LISTEN)
    .option('-v, --verbose', 'log connections')
    .action(async (snap: string, flags: ServeFlags, cmd: Command) => {
      const g = globals(cmd);
      const { host, port } = parseListen(flags.listen);
      const repo = await openRepo(g);
      const { id, snapshot } = await findSnapshot(repo, snap, flags);
      if (!snapshot.image) throw new ExitError(`snapshot ${id.slice(0, 8)} is not an image snapshot (it was made by "backup PATH", not "backup --image"); only disk images can be served over NBD`, EXIT.failed);
      const reader = openImageSnapshot(repo, snapshot, { what: `snapshot ${id.slice(0, 8)}` });
      const lock = await longReadLock(repo, 'serve-nbd', 'blocks', 'serving anyway');
      const server = new NbdServer({
        name: id.slice(0, 8),
        aliases: [id],
        description: `holdfast snapshot ${id.slice(0, 8)} of ${snapshot.hostname}:${snapshot.image.source} at ${localIso(snapshot.time)}`,
        size: reader.size,
        read: (offset, length) => reader.read(offset, length),
        extents: (offset, length) => reader.extents(offset, length),
      }, { ...(flags.verbose ? { onLog: (m: string) => process.stderr.write(`serve-nbd: ${m}\n`) } : { onLog: (m: string) => { if (/error|failed/.test(m)) warn(m); } }) });
      // Signals are caught before the address is printed, so that whoever waits for that line can stop us at once.
      const { interrupted: stopped, off: stop } = untilInterrupted();
      try {
        const addr = await server.listen(port, host).catch((e: NodeJS.ErrnoException) => {
          const why = e.code === 'EADDRINUSE' ? 'the address is in use (another serve-nbd?); choose another with --listen HOST:PORT' : e.message;
          throw new ExitError(`cannot listen on ${flags.listen}: ${why}; nothing is served`, EXIT.failed);
        });
        const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
        if (!isLoopback(addr.address)) warn(`NBD has no authentication and no encryption: anyone who can reach ${shown}:${addr.port} can read the whole disk`);
        say(g, `serving snapshot ${id.slice(0, 8)} (${reader.size} bytes, ${formatBytes(reader.size)}) at nbd://${shown}:${addr.port}`);
        say(g, 'press Ctrl-C to stop');
        await stopped;
        say(g, 'stopping');
      } finally {
        stop();
        await server.close();
        await lock?.release();
      }
    });
}
