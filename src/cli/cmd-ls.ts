/** `holdfast ls SNAP [PATH]`: lists the files of a snapshot. */
import type { Command } from 'commander';
import { walkTree } from '../jobs/tree-walk.js';
import { writeOut } from '../jobs/tar-stream-writer.js';
import { LineBatch } from '../jobs/line-batch.js';
import { modeString } from '../core/mode-string.js';
import { isoFromNanos, localTime } from '../core/local-time.js';
import type { TreeNode } from '../repo/tree.js';
import { globals, openRepo, warn } from './context.js';
import { findSnapshot, tellResolved, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';
import { WalkReport } from './walk-report.js';
import { isImageSnapshot, openImageFiles } from '../jobs/image-files/open-image-files.js';
import { listImage } from '../jobs/image-files/image-ls.js';
import { printable, printableLines } from './printable.js';
import { bytesField } from './json-output.js';

function within(path: string, prefix: string): boolean {
  return prefix === '/' || path === prefix || path.startsWith(`${prefix}/`) || prefix.startsWith(`${path}/`);
}

const ACL_ACCESS = Buffer.from('system.posix_acl_access');
const ACL_DEFAULT = Buffer.from('system.posix_acl_default');

/** `+` for a node with a POSIX ACL, as GNU ls marks one; else nothing. */
const aclMark = (node: TreeNode): string => (node.xattrs?.some((x) => x.name.equals(ACL_ACCESS) || x.name.equals(ACL_DEFAULT)) ? '+' : '');

/** A node as `ls -l` prints it (also `find -l`): mode (`+` when it has an ACL), owner, group, size, local time, path, link target. */
export function longLine(path: string, node: TreeNode): string {
  const link = node.target ? ` -> ${node.target.toString()}` : '';
  return `${printable(`${modeString(node)}${aclMark(node)} ${(node.user ?? String(node.uid)).padEnd(8)} ${(node.group ?? String(node.gid)).padEnd(8)} ${String(node.size).padStart(12)} ${localTime(Number(node.mtime / 1_000_000n))} ${path}${link}`)}\n`;
}

export function register(program: Command): void {
  withFilterOptions(program.command('ls'))
    .description('list files in a snapshot')
    .argument('<snapshot>', 'snapshot id, id prefix, or "latest"')
    .argument('[path]', 'list only this path and below', '/')
    .option('-l, --long', 'show mode, owner, size and time')
    .action(async (snap: string, path: string, flags: SnapshotFilter & { long?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g);
      const found = await findSnapshot(repo, snap, flags);
      tellResolved(g, 'listing', found);
      const { id, snapshot } = found;
      if (isImageSnapshot(snapshot)) {
        // Files inside a disk image: read from the image's filesystems (src/jobs/image-files).
        const volume = await openImageFiles(repo, snapshot, id, warn);
        return listImage(volume, path, { format: g.json ? 'json' : flags.long ? 'long' : 'plain', write: (t) => writeOut(process.stdout, g.json ? t : printableLines(t)), warn });
      }
      const prefix = `/${path.split('/').filter((p) => p !== '').join('/')}`;
      const out = new LineBatch((t) => writeOut(process.stdout, t));
      // Refused names are only warned about (the listing shows what a restore would make); an unreadable folder fails the command.
      const report = new WalkReport('ls', (why) => `unsafe name in snapshot (${why})`, false);
      for await (const { path: p, node } of walkTree(repo, snapshot.tree, {
        filter: (pp) => within(pp.toString(), prefix),
        ...report.walk,
      })) {
        const ps = p.toString();
        if (!(prefix === '/' || ps === prefix || ps.startsWith(`${prefix}/`))) continue;
        if (g.json) {
          await out.push(`${JSON.stringify({
            path: ps, type: node.type, mode: node.mode, uid: node.uid, gid: node.gid, user: node.user, group: node.group,
            size: node.size, mtime: isoFromNanos(node.mtime),
            ...(node.target ? { target: node.target.toString() } : {}),
            ...(node.xattrs ? { xattrs: node.xattrs.map((x) => ({ ...bytesField('name', x.name, '_b64'), ...bytesField('value', x.value, '_b64') })) } : {}),
          })}\n`);
        } else if (flags.long) {
          await out.push(longLine(ps, node));
        } else {
          await out.push(`${printable(ps)}\n`);
        }
      }
      await out.flush();
      report.end();
    });
}
