import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { walkTree, type TreeLoader } from '../../src/jobs/tree-walk.js';
import type { TreeNode } from '../../src/repo/tree.js';

// A collection before measuring: what the walk holds, not the garbage of the paths it made on the way down.
setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

const META = { mode: 0o755, uid: 0, gid: 0, mtime: 0n, ctime: 0n, inode: 1n, device: 1n, links: 1, size: 0 };

/** A chain of folders `depth` deep, each named `name`, made up as it is read (no repository). */
function chain(depth: number, name: Buffer): TreeLoader {
  return {
    loadTree: (id) => {
      const level = Number(id);
      return Promise.resolve(level === depth ? [] : [{ ...META, name, type: 'dir', subtree: String(level + 1) } satisfies TreeNode]);
    },
  };
}

describe('the tree walk', () => {
  it('holds memory linear in the depth: a chain 1,500 deep of 255-byte names', async () => {
    // Each path is up to 1500 × 256 bytes; keeping one per level (as the walk did) holds 290 MB at the bottom.
    const depth = 1500;
    const name = Buffer.alloc(255, 'n');
    gc();
    const before = process.memoryUsage().arrayBuffers;
    let deepest = 0;
    let atBottom = 0;
    let done = 0;
    for await (const e of walkTree(chain(depth, name), '0', { onDirDone: () => void done++ })) {
      deepest = e.depth;
      if (e.depth === depth) {
        gc();
        atBottom = process.memoryUsage().arrayBuffers - before;
        assert.equal(e.path.length, depth * 256);
        assert.ok(e.path.equals(Buffer.concat(Array.from({ length: depth }, () => Buffer.concat([Buffer.from('/'), name])))));
      }
    }
    assert.equal(deepest, depth);
    assert.equal(done, depth, 'onDirDone once per folder');
    assert.ok(atBottom < 32 * 2 ** 20, `${(atBottom / 2 ** 20).toFixed(0)} MiB of buffers held at the bottom of the chain`);
  });

  it('gives onDirDone the folder\'s own path, below a base path', async () => {
    const seen: string[] = [];
    const walked: string[] = [];
    for await (const e of walkTree(chain(3, Buffer.from('d')), '0', { onDirDone: (d) => void seen.push(`${d.path.toString()}@${d.depth}`) }, Buffer.from('/base'))) walked.push(e.path.toString());
    assert.deepEqual(walked, ['/base/d', '/base/d/d', '/base/d/d/d']);
    assert.deepEqual(seen, ['/base/d/d/d@3', '/base/d/d@2', '/base/d@1']);
  });
});
