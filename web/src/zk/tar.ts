/**
 * A folder of a snapshot as a tar stream (POSIX pax, which GNU tar, bsdtar
 * and 7-Zip read), made as it is read: one header, then the file's bytes
 * as the reader opens them, never a whole file in memory. Every name comes
 * from `ZkSafe.walk`, which has refused names with `/`, `..` and the like
 * (docs/format.md §6.4), so no entry points outside the archive's folder.
 *
 *   entry  = [pax header (path, linkpath, size, mtime when they do not fit ustar)] ustar header, content, padding to 512
 *   stream = entry* , two zero blocks
 */
import { concatBytes, utf8 } from './bytes.js';
import type { TreeNode } from './format.js';
import { joinPath, type WalkEntry, type ZkSafe } from './safe.js';

const BLOCK = 512;

/** The tar of the walk below tree `tree`, entries named `top/…`; `onSkip` hears of what a tar cannot hold (sockets, devices). */
export async function* tarOf(safe: ZkSafe, tree: string, top: Uint8Array, onSkip: (path: string, why: string) => void = () => undefined): AsyncGenerator<Uint8Array> {
  yield* entry(top, { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: BigInt(Date.now()) * 1_000_000n, size: 0 } as TreeNode);
  for await (const e of safe.walk(tree)) {
    const path = joinPath([top, ...e.path]);
    yield* nodeEntry(safe, e, path, onSkip);
  }
  yield new Uint8Array(2 * BLOCK);
}

async function* nodeEntry(safe: ZkSafe, e: WalkEntry, path: Uint8Array, onSkip: (path: string, why: string) => void): AsyncGenerator<Uint8Array> {
  const n = e.node;
  if (n.type === 'file') {
    yield* entry(path, n);
    let sent = 0;
    for await (const b of safe.fileBytes(n, new TextDecoder().decode(path))) {
      sent += b.length;
      yield b;
    }
    const pad = (BLOCK - (sent % BLOCK)) % BLOCK;
    if (pad > 0) yield new Uint8Array(pad);
  } else if (n.type === 'dir' || n.type === 'symlink' || n.type === 'fifo') {
    yield* entry(path, n);
  } else {
    onSkip(new TextDecoder().decode(path), `a ${n.type} is not put into the archive`);
  }
}

const TYPE_FLAG: Partial<Record<TreeNode['type'], string>> = { file: '0', symlink: '2', dir: '5', fifo: '6' };

/** The header blocks of one entry (a pax extended header first when ustar cannot hold its path, link, size or owner). */
function* entry(path: Uint8Array, n: TreeNode): Generator<Uint8Array> {
  const name = n.type === 'dir' ? concatBytes([path, utf8.encode('/')]) : path;
  const pax: [string, Uint8Array][] = [];
  const ascii = (b: Uint8Array): boolean => b.every((c) => c >= 0x20 && c < 0x7f);
  if (name.length > 100 || !ascii(name)) pax.push(['path', name]);
  if (n.target && (n.target.length > 100 || !ascii(n.target))) pax.push(['linkpath', n.target]);
  const size = n.type === 'file' ? n.size : 0;
  if (size > 0o77777777777) pax.push(['size', utf8.encode(String(size))]);
  const seconds = n.mtime / 1_000_000_000n;
  const nanos = n.mtime - seconds * 1_000_000_000n;
  pax.push(['mtime', utf8.encode(`${seconds}.${String(nanos < 0n ? -nanos : nanos).padStart(9, '0')}`)]);
  if (n.user !== undefined && (utf8.encode(n.user).length > 32 || !/^[\x20-\x7e]*$/.test(n.user))) pax.push(['uname', utf8.encode(n.user)]);
  if (n.group !== undefined && (utf8.encode(n.group).length > 32 || !/^[\x20-\x7e]*$/.test(n.group))) pax.push(['gname', utf8.encode(n.group)]);
  if (pax.length > 0) {
    const body = concatBytes(pax.map(([k, v]) => record(k, v)));
    yield header(utf8.encode('PaxHeaders/entry'), 'x', 0o644, 0, 0, body.length, 0n, new Uint8Array(0), '', '');
    yield padded(body);
  }
  yield header(name.length > 100 ? name.subarray(0, 100) : name, TYPE_FLAG[n.type]!, n.mode, n.uid, n.gid, size > 0o77777777777 ? 0 : size,
    seconds < 0n ? 0n : seconds, n.target ? n.target.subarray(0, 100) : new Uint8Array(0), n.user ?? '', n.group ?? '');
}

/** A pax record, `LEN key=value\n`, LEN counting itself. */
function record(key: string, value: Uint8Array): Uint8Array {
  const rest = utf8.encode(` ${key}=`).length + value.length + 1;
  let len = rest + 1;
  while (String(len).length + rest !== len) len = String(len).length + rest;
  return concatBytes([utf8.encode(`${len} ${key}=`), value, utf8.encode('\n')]);
}

function header(name: Uint8Array, type: string, mode: number, uid: number, gid: number, size: number, mtime: bigint, link: Uint8Array, user: string, group: string): Uint8Array {
  const h = new Uint8Array(BLOCK);
  const put = (at: number, b: Uint8Array, max: number): void => h.set(b.subarray(0, max), at);
  const octal = (at: number, width: number, v: number | bigint): void => put(at, utf8.encode(`${v.toString(8).padStart(width - 1, '0')}\0`), width);
  put(0, name, 100);
  octal(100, 8, mode & 0o7777);
  octal(108, 8, uid <= 0o7777777 ? uid : 0);
  octal(116, 8, gid <= 0o7777777 ? gid : 0);
  octal(124, 12, size);
  octal(136, 12, mtime <= 0o77777777777n ? mtime : 0n);
  h.fill(0x20, 148, 156);
  h[156] = type.charCodeAt(0);
  put(157, link, 100);
  put(257, utf8.encode('ustar\0'), 6);
  put(263, utf8.encode('00'), 2);
  put(265, utf8.encode(user), 32);
  put(297, utf8.encode(group), 32);
  let sum = 0;
  for (const c of h) sum += c;
  put(148, utf8.encode(`${sum.toString(8).padStart(6, '0')}\0 `), 8);
  return h;
}

function padded(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(b.length / BLOCK) * BLOCK);
  out.set(b);
  return out;
}
