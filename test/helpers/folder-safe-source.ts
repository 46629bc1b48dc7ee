/**
 * A local repository (as `holdfast init` makes one) read through the
 * browser reader's `SafeSource` (web/src/zk/source.ts), so that the Node
 * tests run the zero-knowledge reader on a safe the CLI wrote.
 */
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ServerError } from '../../web/src/zk/errors.js';
import type { Folder, SafeSource } from '../../web/src/zk/source.js';

export class FolderSafeSource implements SafeSource {
  /** Every range read, as `pack offset length`: a test sees what was fetched. */
  readonly ranges: string[] = [];

  constructor(private readonly root: string) {}

  private path(folder: Folder | 'config', name: string): string {
    if (folder === 'config') return join(this.root, 'config');
    return folder === 'data' ? join(this.root, 'data', name.slice(0, 2), name) : join(this.root, folder, name);
  }

  async get(folder: Folder | 'config', name: string): Promise<Uint8Array> {
    try {
      return new Uint8Array(await readFile(this.path(folder, name)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ServerError(404, 'NOT_FOUND', `no ${folder} object ${name}`);
      throw e;
    }
  }

  async range(name: string, offset: number, length: number): Promise<Uint8Array> {
    this.ranges.push(`${name} ${offset} ${length}`);
    const f = await open(this.path('data', name));
    try {
      const b = new Uint8Array(length);
      const { bytesRead } = await f.read(b, 0, length, offset);
      if (bytesRead !== length) throw new ServerError(416, 'SHORT_READ', `pack ${name}: ${bytesRead} of ${length} bytes at ${offset}`);
      return b;
    } finally {
      await f.close();
    }
  }

  async list(folder: Folder): Promise<string[]> {
    if (folder !== 'data') return (await readdir(join(this.root, folder))).filter((n) => !n.startsWith('.'));
    const names: string[] = [];
    for (const d of await readdir(join(this.root, 'data'))) names.push(...await readdir(join(this.root, 'data', d)));
    return names;
  }
}
