/**
 * `holdfast cat config|index ID|snapshot ID|key ID|blob ID|pack ID`: one
 * object of the repository, for debugging (restic's `cat`). Objects with a
 * structure are printed as JSON, decrypted and decoded (a tree blob with
 * the node fields of format §6.1 by name); a data
 * blob as its plaintext bytes, a pack as its stored bytes. IDs may be
 * unique prefixes; a snapshot may be "latest".
 */
import type { Command } from 'commander';
import { decodeIndex } from '../repo/index-file.js';
import { decodeKeyFile } from '../repo/key-file.js';
import { handleOf, loadBounded, loadChecked } from '../repo/objects.js';
import { BlobType } from '../repo/pack.js';
import type { Repository } from '../repo/repository.js';
import { decodeTree, type TreeNode } from '../repo/tree.js';
import type { ObjectType } from '../storage/backend.js';
import { writeOut } from '../jobs/tar-stream-writer.js';
import { globals, openRepo } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { bytesField } from './json-output.js';
import { findSnapshot } from './snapshot-filter.js';

const KINDS = ['config', 'index', 'snapshot', 'key', 'blob', 'pack'] as const;
type Kind = (typeof KINDS)[number];

/** JSON with 2-space indents; bigints as decimal strings. */
const json = (v: unknown): string => `${JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? x.toString() : x), 2)}\n`;

/** Bytes as `field` when they are UTF-8, else in base64 as `fieldB64`. */
const bytesView = (field: string, b: Buffer): Record<string, string> => bytesField(field, b, 'B64');

/**
 * A tree as `cat` shows it: each node's fields of format §6.1 by name, a
 * name, symlink target, attribute name or value that is not UTF-8 in base64. A view for people;
 * the stored encoding is binary (§6.5).
 */
function treeView(nodes: readonly TreeNode[]): { nodes: Record<string, unknown>[] } {
  return {
    nodes: nodes.map(({ name, target, xattrs, ...rest }) => ({
      ...bytesView('name', name), ...rest, ...(target ? bytesView('target', target) : {}),
      ...(xattrs ? { xattrs: xattrs.map((x) => ({ ...bytesView('name', x.name), ...bytesView('value', x.value) })) } : {}),
    })),
  };
}

const TYPE_NAMES: Record<BlobType, string> = { [BlobType.Data]: 'data', [BlobType.Tree]: 'tree', [BlobType.ImageMap]: 'imagemap' };

/** The one name among `names` that starts with `prefix`. */
function unique(names: Iterable<string>, prefix: string, what: string): string {
  if (!/^[0-9a-f]{1,64}$/.test(prefix)) throw new ExitError(`"${prefix}" is not an id (hex digits)`, EXIT.usage);
  const found: string[] = [];
  for (const n of names) if (n.startsWith(prefix)) found.push(n);
  if (found.length === 0) throw new ExitError(`no ${what} with id ${prefix}`, EXIT.failed);
  if (found.length > 1) throw new ExitError(`${what} id prefix ${prefix} is ambiguous (${found.length} match)`, EXIT.failed);
  return found[0]!;
}

async function objectName(repo: Repository, type: ObjectType, prefix: string, what: string): Promise<string> {
  const names: string[] = [];
  for await (const info of repo.backend.list(type)) names.push(info.name);
  return unique(names, prefix, what);
}

async function cat(repo: Repository, kind: Kind, id: string): Promise<Buffer | string> {
  switch (kind) {
    case 'config':
      return json(repo.config);
    case 'index': {
      const name = await objectName(repo, 'index', id, 'index file');
      const f = decodeIndex(await loadChecked(repo.backend, handleOf('index', name), `index ${name}`), `index ${name}`);
      return json({ packs: f.packs.map((p) => ({ pack: p.pack, blobs: p.blobs.map((b) => ({ ...b, type: TYPE_NAMES[b.type] ?? b.type })) })), supersedes: f.supersedes });
    }
    case 'snapshot': {
      const { id: full, snapshot } = await findSnapshot(repo, id, {});
      return json({ id: full, ...snapshot });
    }
    case 'key': {
      const name = await objectName(repo, 'key', id, 'key');
      return json(decodeKeyFile(await loadChecked(repo.backend, handleOf('key', name), `key ${name}`), `key ${name}`));
    }
    case 'blob': {
      await repo.loadIndex();
      const full = unique((function* () {
        for (const b of repo.index.entries()) yield b.id;
      })(), id, 'blob');
      const loc = repo.index.lookup(full)!;
      const plain = await repo.loadBlob(loc.type, full);
      return loc.type === BlobType.Tree ? json(treeView(decodeTree(plain, `tree ${full}`))) : plain;
    }
    case 'pack': {
      const name = await objectName(repo, 'data', id, 'pack');
      return loadBounded(repo.backend, handleOf('data', name), `pack ${name}`);
    }
  }
}

export function register(program: Command): void {
  program
    .command('cat')
    .description('print an object of the repository, for debugging: config, or index, snapshot, key, blob or pack with an id')
    .argument('<type>', KINDS.join(', '))
    .argument('[id]', 'the object\'s id (a unique prefix; "latest" for a snapshot)')
    .action(async (kind: string, id: string | undefined, _: unknown, cmd: Command) => {
      if (!(KINDS as readonly string[]).includes(kind)) throw new ExitError(`cat: unknown type "${kind}" (use one of ${KINDS.join(', ')})`, EXIT.usage);
      if (kind !== 'config' && id === undefined) throw new ExitError(`cat ${kind} needs an id`, EXIT.usage);
      const repo = await openRepo(globals(cmd), { index: false });
      await writeOut(process.stdout, await cat(repo, kind as Kind, id ?? ''));
    });
}
