/**
 * A backup of a VM's disk killed after its point in time: opens
 * `qmp:SOCKET#DISK` adding the bitmap ADD (and reading SINCE's clusters),
 * reads its first block, says "open" on stdout, and waits to be killed, so
 * that the VM holds everything a run adds (fleecing node, backup job, NBD
 * server and export, temporary and new bitmaps) when the test sends SIGKILL.
 *
 *   node qmp-open-main.js SOURCE ADD [SINCE]
 */
import { qmpDisk } from '../../src/sources/image/qmp-disk.js';

const [source, add, since] = process.argv.slice(2);
// `node --test dist/test/` runs every file below test/, this one too: with no source there is nothing to open.
if (source !== undefined) {
  const input = await qmpDisk(source).open(add, since);
  await input.random!.read(0, 65536);
  process.stdout.write('open\n');
  setInterval(() => undefined, 60_000);
}
