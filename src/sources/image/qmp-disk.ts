/**
 * The disk of a running VM, read point-in-time through its QMP socket with
 * qemu's own fleecing (docs/interop/bitmaps.rst, QEMU 7.2), as libvirt's
 * pull-mode backup does. The source is `qmp:SOCKET#DISK`: SOCKET the
 * absolute path of a QMP unix socket of the VM, DISK a drive id
 * (`-drive id=`, query-block's `device`) or a block node name.
 *
 *   open(add, since):
 *     clean up what a killed run left (below)
 *     qemu-img create  FLEECE (a qcow2 overlay next to the disk's file)
 *     blockdev-add     holdfast-fleece-T: FLEECE with the disk as its backing
 *     transaction      one instant for all of:
 *                        block-dirty-bitmap-add holdfast-tmp-T, disabled   } since's clusters,
 *                        block-dirty-bitmap-merge since → holdfast-tmp-T   } frozen
 *                        block-dirty-bitmap-add ADD, persistent             (the next backup's)
 *                        blockdev-backup sync=none disk → fleece            (copy-before-write:
 *                                                                            old data to FLEECE
 *                                                                            before a guest write)
 *     nbd-server-start SOCKET.holdfast-nbd (or the one a run on another disk of the VM started)
 *     block-export-add holdfast-T: the fleece node, read-only, bitmap holdfast-tmp-T
 *     → an NBD input: reads give the disk as it was at the transaction
 *   close: block-export-del, nbd-server-stop when no export is left,
 *          block-job-cancel, blockdev-del, bitmap holdfast-tmp-T removed, FLEECE removed
 *
 * T is a hash of DISK, so runs on two disks of one VM do not meet. Every
 * name is fixed, so a run killed outright leaves things the next run finds
 * and removes in the same order before it starts. QMP is held only while
 * the VM is changed: a QMP socket serves one client at a time.
 */
import { createHash } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { BitmapAddError, type DirtyBitmapDisk, type DiskBitmap } from './dirty-bitmap-disk.js';
import { openNbdExport } from './nbd-input.js';
import { QmpClient, QmpCommandError } from './qmp-client.js';
import { createQcow2, QemuError } from './qemu.js';

/** The scheme of a VM disk source. */
const SCHEME = 'qmp:';
/** How long a cancelled job or a deleted export may take to go. */
const GONE_TIMEOUT_MS = 30_000;

/** True when `s` names a VM's disk through QMP (`qmp:/run/vm1.qmp#drive0`). */
export function isQmpSource(s: string): boolean {
  return s.startsWith(SCHEME);
}

/** The QMP socket and the disk a `qmp:` source names. */
export interface QmpSource {
  readonly socket: string;
  readonly disk: string;
}

/** Parses `qmp:SOCKET#DISK`; SOCKET absolute, DISK a drive id or node name. */
export function parseQmpSource(s: string): QmpSource {
  const m = /^qmp:(\/[^#]*)#([A-Za-z#][\w.#-]{0,127})$/.exec(s);
  if (!m) throw new Error(`bad VM disk source "${s}": use qmp:/PATH/TO/QMP.SOCKET#DRIVE (a drive id or block node name)`);
  return { socket: m[1]!, disk: m[2]! };
}

/** The names a run on one disk gives what it adds to the VM. */
interface RunNames {
  readonly fleeceNode: string;
  readonly job: string;
  readonly export: string;
  readonly tmpBitmap: string;
  readonly nbdSocket: string;
}

function namesOf(src: QmpSource): RunNames {
  const t = createHash('sha256').update(src.disk).digest('hex').slice(0, 12);
  return { fleeceNode: `holdfast-fleece-${t}`, job: `holdfast-backup-${t}`, export: `holdfast-${t}`, tmpBitmap: `holdfast-tmp-${t}`, nbdSocket: `${src.socket}.holdfast-nbd` };
}

/** The format node of the disk, as query-block and query-named-block-nodes describe it. */
interface DiskNode {
  readonly nodeName: string;
  readonly driver: string;
  readonly virtualSize: number;
  /** The image file, when it is one. */
  readonly file: string | undefined;
  readonly bitmaps: readonly DiskBitmap[];
  /** Every bitmap's name, persistent or not. */
  readonly bitmapNames: readonly string[];
}

interface BlockDeviceInfo {
  'node-name': string;
  drv: string;
  file?: string;
  image?: { 'virtual-size'?: number };
  'dirty-bitmaps'?: { name?: string; recording?: boolean; inconsistent?: boolean; persistent?: boolean }[];
}

async function findDisk(c: QmpClient, src: QmpSource): Promise<DiskNode> {
  const devices = await c.execute<{ device: string; inserted?: BlockDeviceInfo }[]>('query-block');
  let info = devices.find((d) => d.device === src.disk)?.inserted;
  if (!info) info = (await c.execute<BlockDeviceInfo[]>('query-named-block-nodes', { flat: true })).find((n) => n['node-name'] === src.disk);
  if (!info) throw new QemuError(`the VM at ${src.socket} has no drive or block node called ${src.disk} (query-block lists ${devices.map((d) => d.device || '(no id)').join(', ') || 'none'})`);
  if (info.drv === 'copy-before-write') throw new QemuError(`a backup job of another program is running on ${src.disk}; try again when it ends`);
  return {
    nodeName: info['node-name'],
    driver: info.drv,
    virtualSize: Number(info.image?.['virtual-size']),
    file: info.file,
    bitmaps: (info['dirty-bitmaps'] ?? []).filter((b) => b.persistent && b.name !== undefined)
      .map((b) => ({ name: b.name!, recording: b.recording === true, inconsistent: b.inconsistent === true })),
    bitmapNames: (info['dirty-bitmaps'] ?? []).flatMap((b) => (b.name === undefined ? [] : [b.name])),
  };
}

/** Where the fleecing overlay goes: beside the disk's image file (it is where the VM's storage is), else beside the QMP socket. */
function fleeceFile(src: QmpSource, node: DiskNode, names: RunNames): string {
  const dir = node.file !== undefined && isAbsolute(node.file) ? dirname(node.file) : dirname(src.socket);
  return join(dir, `${names.fleeceNode}.qcow2`);
}

async function untilGone(what: string, present: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + GONE_TIMEOUT_MS;
  while (await present()) {
    if (Date.now() > deadline) throw new QemuError(`${what} did not go within ${GONE_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** QMP errors that say the thing to remove is not there. */
const absent = (e: unknown): undefined => {
  if (e instanceof QmpCommandError) return undefined;
  throw e;
};

/**
 * Removes what a run on this disk added, in the reverse order it was
 * added; each step does nothing when its object is not there. `fleece`:
 * the overlay file, when known. Returns the disk, found once the backup
 * job's filter is gone from above it.
 */
async function tearDown(c: QmpClient, src: QmpSource, names: RunNames, fleece?: string): Promise<DiskNode> {
  const exports = () => c.execute<{ id: string }[]>('query-block-exports');
  if ((await exports()).some((e) => e.id === names.export)) {
    await c.execute('block-export-del', { id: names.export, mode: 'hard' }).catch(absent);
    await untilGone(`the NBD export ${names.export}`, async () => (await exports()).some((e) => e.id === names.export));
  }
  // The server is shared by runs on the VM's disks (and ours by its socket's name): stopped with the last export.
  if ((await exports()).length === 0 && (await stat(names.nbdSocket).catch(() => undefined))?.isSocket()) {
    await c.execute('nbd-server-stop').catch(absent);
  }
  const jobs = () => c.execute<{ device: string }[]>('query-block-jobs');
  if ((await jobs()).some((j) => j.device === names.job)) {
    await c.execute('block-job-cancel', { device: names.job, force: true }).catch(absent);
    await untilGone(`the backup job ${names.job}`, async () => (await jobs()).some((j) => j.device === names.job));
  }
  const nodes = await c.execute<BlockDeviceInfo[]>('query-named-block-nodes', { flat: true });
  const fleeceNode = nodes.find((n) => n['node-name'] === names.fleeceNode);
  if (fleeceNode) await c.execute('blockdev-del', { 'node-name': names.fleeceNode });
  const disk = await findDisk(c, src);
  if (disk.bitmapNames.includes(names.tmpBitmap)) await c.execute('block-dirty-bitmap-remove', { node: disk.nodeName, name: names.tmpBitmap });
  await rm(fleece ?? fleeceFile(src, disk, names), { force: true });
  return disk;
}

/** Runs `f` on a fresh QMP connection to `src`. */
async function withQmp<T>(src: QmpSource, f: (c: QmpClient) => Promise<T>): Promise<T> {
  const c = await QmpClient.connect(src.socket).catch((e: unknown) => {
    throw new QemuError(`cannot reach the QMP socket ${src.socket}: ${(e as Error).message}`);
  });
  try {
    return await f(c);
  } finally {
    await c.close();
  }
}

/** Starts the NBD server on our socket, or finds it already started there (by a run on another disk, or one killed). */
async function startNbdServer(c: QmpClient, names: RunNames): Promise<void> {
  try {
    await c.execute('nbd-server-start', { addr: { type: 'unix', data: { path: names.nbdSocket } } });
  } catch (e) {
    if (!(e instanceof QmpCommandError) || !/already running/i.test(e.description)) throw e;
    if (!(await stat(names.nbdSocket).catch(() => undefined))?.isSocket()) {
      throw new QemuError(`the VM's NBD server was started by another program (not on ${names.nbdSocket}); holdfast needs its own: stop that one first`);
    }
  }
}

/** The disk `source` (`qmp:SOCKET#DISK`) of a running VM (see the module comment). */
export function qmpDisk(source: string): DirtyBitmapDisk {
  const src = parseQmpSource(source);
  const names = namesOf(src);
  return {
    name: source,
    inspect: () => withQmp(src, async (c) => {
      const node = await tearDown(c, src, names);
      return { virtualSize: node.virtualSize, bitmaps: node.bitmaps };
    }),
    removeBitmap: (name) => withQmp(src, async (c) => {
      await c.execute('block-dirty-bitmap-remove', { node: (await findDisk(c, src)).nodeName, name });
    }),
    open: async (add, since, signal) => {
      const { fleece, format } = await withQmp(src, async (c) => {
        const node = await tearDown(c, src, names);
        if (add !== undefined && node.driver !== 'qcow2') throw new BitmapAddError(`${src.disk} is a ${node.driver} disk: only qcow2 keeps persistent dirty bitmaps`);
        const fleece = fleeceFile(src, node, names);
        try {
          await createQcow2(fleece, node.virtualSize);
          await c.execute('blockdev-add', { driver: 'qcow2', 'node-name': names.fleeceNode, file: { driver: 'file', filename: fleece }, backing: node.nodeName });
          const backup = { type: 'blockdev-backup', data: { device: node.nodeName, target: names.fleeceNode, sync: 'none', 'job-id': names.job } };
          const frozen = since === undefined ? [] : [
            { type: 'block-dirty-bitmap-add', data: { node: node.nodeName, name: names.tmpBitmap, persistent: false, disabled: true } },
            { type: 'block-dirty-bitmap-merge', data: { node: node.nodeName, target: names.tmpBitmap, bitmaps: [since] } },
          ];
          const next = add === undefined ? [] : [{ type: 'block-dirty-bitmap-add', data: { node: node.nodeName, name: add, persistent: true } }];
          try {
            await c.execute('transaction', { actions: [...frozen, ...next, backup] });
          } catch (e) {
            // The bitmap is the one action a healthy VM refuses (a name taken, a read-only image); without it, a plain fleecing.
            if (add !== undefined && e instanceof QmpCommandError) throw new BitmapAddError(e.description);
            throw e;
          }
          await startNbdServer(c, names);
          await c.execute('block-export-add', {
            type: 'nbd', id: names.export, 'node-name': names.fleeceNode, name: names.export, writable: false,
            ...(since === undefined ? {} : { bitmaps: [names.tmpBitmap] }),
          });
        } catch (e) {
          await tearDown(c, src, names, fleece);
          throw e;
        }
        return { fleece, format: node.driver === 'qcow2' ? 'qcow2' as const : undefined };
      });
      const cleanup = (): Promise<void> => withQmp(src, async (c) => {
        await tearDown(c, src, names, fleece);
      });
      try {
        return await openNbdExport(source, 'qmp', { socket: names.nbdSocket, exportName: names.export }, {
          cleanup, ...(format ? { format } : {}), ...(since === undefined ? {} : { bitmap: names.tmpBitmap }), ...(signal ? { signal } : {}),
        });
      } catch (e) {
        await cleanup();
        throw e;
      }
    },
  } satisfies DirtyBitmapDisk;
}

