/** `holdfast diff SNAP1 SNAP2`: what changed between two snapshots. */
import type { Command } from 'commander';
import type { Repository } from '../repo/repository.js';
import { sameXattrs, type TreeNode } from '../repo/tree.js';
import { childPath } from '../jobs/tree-walk.js';
import { formatBytes, globals, openRepo, say } from './context.js';
import { findSnapshot } from './snapshot-filter.js';

interface DiffStats {
  added: number;
  removed: number;
  modified: number;
  addedBytes: number;
  removedBytes: number;
}

/** Same bytes: by fingerprint when both have one (a file stored again in another batch has other slices), else by content list. */
function sameContent(a: TreeNode, b: TreeNode): boolean {
  const same = a.fingerprint !== undefined && b.fingerprint !== undefined
    ? a.fingerprint === b.fingerprint && a.size === b.size
    : JSON.stringify(a.content ?? []) === JSON.stringify(b.content ?? []);
  return same && Buffer.compare(a.target ?? Buffer.alloc(0), b.target ?? Buffer.alloc(0)) === 0;
}

/** Same owner, mode, mtime, device number and extended attributes (ACLs, capabilities, labels among them). */
function sameMeta(a: TreeNode, b: TreeNode): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtime === b.mtime && a.rdev === b.rdev && sameXattrs(a.xattrs, b.xattrs);
}

async function diffTrees(repo: Repository, a: string | undefined, b: string | undefined, dir: Buffer, emit: (mark: string, path: Buffer, dirNode: boolean) => void, st: DiffStats): Promise<void> {
  if (a === b) return;
  const left = a ? await repo.loadTree(a) : [];
  const right = b ? await repo.loadTree(b) : [];
  const byName = new Map(left.map((n) => [n.name.toString('latin1'), n]));
  const seen = new Set<string>();
  const count = async (n: TreeNode, side: 'added' | 'removed', path: Buffer): Promise<void> => {
    emit(side === 'added' ? '+' : '-', path, n.type === 'dir');
    st[side]++;
    st[side === 'added' ? 'addedBytes' : 'removedBytes'] += n.size;
    if (n.type === 'dir') await diffTrees(repo, side === 'removed' ? n.subtree : undefined, side === 'added' ? n.subtree : undefined, path, emit, st);
  };
  for (const r of right) {
    const key = r.name.toString('latin1');
    seen.add(key);
    const l = byName.get(key);
    const path = childPath(dir, r.name);
    if (!l) await count(r, 'added', path);
    else if (l.type !== r.type) {
      emit('T', path, false);
      st.modified++;
    } else if (r.type === 'dir') {
      if (!sameMeta(l, r)) {
        emit('U', path, true);
        st.modified++;
      }
      await diffTrees(repo, l.subtree, r.subtree, path, emit, st);
    } else if (!sameContent(l, r)) {
      emit('M', path, false);
      st.modified++;
    } else if (!sameMeta(l, r)) {
      emit('U', path, false);
      st.modified++;
    }
  }
  for (const l of left) if (!seen.has(l.name.toString('latin1'))) await count(l, 'removed', childPath(dir, l.name));
}

export function register(program: Command): void {
  program
    .command('diff')
    .description('show what changed between two snapshots (+ added, - removed, M content, U metadata, T type)')
    .argument('<snapshot1>')
    .argument('<snapshot2>')
    .action(async (s1: string, s2: string, _flags: unknown, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g);
      const a = await findSnapshot(repo, s1, {});
      const b = await findSnapshot(repo, s2, {});
      const st: DiffStats = { added: 0, removed: 0, modified: 0, addedBytes: 0, removedBytes: 0 };
      await diffTrees(repo, a.snapshot.tree, b.snapshot.tree, Buffer.from('/'), (mark, path, isDir) => {
        if (g.json) process.stdout.write(`${JSON.stringify({ change: mark, path: path.toString() + (isDir ? '/' : '') })}\n`);
        else say(g, `${mark}    ${path.toString()}${isDir ? '/' : ''}`);
      }, st);
      if (!g.json) say(g, '');
      if (!g.json) say(g, `${st.added} added (${formatBytes(st.addedBytes)}), ${st.removed} removed (${formatBytes(st.removedBytes)}), ${st.modified} modified`);
    });
}
