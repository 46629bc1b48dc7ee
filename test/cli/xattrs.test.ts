/**
 * Extended attributes, POSIX ACLs, file capabilities and SELinux labels:
 * backed up and restored exactly, checked with the real tools (attr, acl,
 * libcap2-bin: getfattr, getfacl and getcap of the original and of the
 * restore must print the same).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { removeTree } from '../fixtures/tree.js';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';

const isRoot = process.getuid?.() === 0;
const nobody = { uid: 65534, gid: 65534 };
const missing = ['setfattr', 'getfattr', 'setfacl', 'getfacl', 'setcap', 'getcap'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skipReason = !isRoot ? 'needs root (trusted.* attributes, setcap)' : missing.length > 0 ? `${missing.join(', ')} not installed (apt-get install attr acl libcap2-bin)` : undefined;

/** Runs a shell script in `cwd` (non-UTF-8 names are spelled with printf) and returns its stdout. */
function sh(cwd: string, script: string): Buffer {
  return execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * The tree's extended attributes, ACLs and capabilities as the tools print
 * them, with paths relative to `root`, in an order that does not depend on
 * the order of the folders' entries.
 */
function attributesOf(root: string, keep: (line: string) => boolean = () => true): { xattrs: string; acls: string; caps: string } {
  const blocks = (out: Buffer): string => out.toString('latin1').split('\n\n').map((b) => b.trim()).filter((b) => b !== '').flatMap((b) => {
    const [head, ...lines] = b.split('\n');
    const kept = lines.filter(keep);
    return kept.length === 0 ? [] : [[head, ...kept.sort()].join('\n')];
  }).sort().join('\n\n');
  return {
    xattrs: blocks(sh(root, 'getfattr -R -d -m - -h -e hex --absolute-names .')),
    acls: blocks(sh(root, 'getfacl -R -p . 2>/dev/null')),
    caps: sh(root, 'getcap -r .').toString('latin1').split('\n').sort().join('\n'),
  };
}

/** The attributes of one path: name → value in hex. */
function xattrsAt(path: string): Map<string, string> {
  const out = execFileSync('getfattr', ['-d', '-m', '-', '-h', '-e', 'hex', '--absolute-names', path]).toString('latin1');
  return new Map(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/**
 * The source tree: user.* attributes with binary values and names that are
 * not UTF-8, in a folder whose name is not UTF-8; a read-only file with one;
 * access and default ACLs; a capability on a copy of a binary; trusted.* on
 * a folder and on a symlink (which refuses user.*); a file a worker chunks
 * whole (over 4 MiB) and one read on the main thread (over 32 MiB, sparse).
 */
const MAKE_SOURCE = String.raw`
  odd=$(printf 'dir-\xff\xfe')
  mkdir -p "$odd" shared plain
  printf 'hello' > "$odd/file"
  setfattr -n user.binary -v 0x00ff0102fe "$odd/file"
  setfattr -n "user.$(printf 'n\xe9\xff')" -v 0sAAEC "$odd/file"
  setfattr -n user.empty "$odd/file"
  setfattr -n user.on-folder -v 'a folder' "$odd"
  head -c 200000 /dev/urandom > big.bin
  setfattr -n user.big -v "$(head -c 2000 /dev/zero | tr '\0' x)" big.bin
  chmod 0444 big.bin
  printf 'text' > acl.txt
  setfacl -m u:nobody:rw,g:nogroup:r acl.txt
  setfacl -m u:nobody:rx shared
  setfacl -d -m u:nobody:rwx,m::rwx shared
  printf 'in a folder with a default ACL' > shared/inherited
  cp /bin/true ping
  setcap cap_net_raw+ep ping
  setfattr -n trusted.note -v secret plain
  ln -s "$odd/file" link
  setfattr -h -n trusted.on-link -v 1 link
  printf 'nothing' > plain/none
  head -c 5000000 /dev/urandom > mid.bin
  setfattr -n user.mid -v chunked mid.bin
  truncate -s 40M large.bin
  setfattr -n user.large -v streamed large.bin
`;

describe('extended attributes, ACLs and capabilities', () => {
  let s: Sandbox;
  let src: string;
  /** The snapshot of `src`. */
  let snap: string;
  before(async () => {
    s = await Sandbox.create('holdfast-xattrs-');
    if (skipReason) return;
    src = s.path('src');
    mkdirSync(src);
    sh(src, MAKE_SOURCE);
    await s.ok(['init']);
    await s.ok(['backup', '-q', src]);
    snap = (await snapshotsOf(s))[0]!.id;
  });
  after(() => removeTree(s.dir));

  /** Restores the snapshot of `src` into a new folder `name` and returns where the source landed in it. */
  async function restore(name: string): Promise<string> {
    const target = s.path(name);
    // --verify reads every attribute back: nothing differs from the snapshot's.
    await s.ok(['restore', snap, '--target', target, '--verify']);
    return join(target, src);
  }

  it('restores user.* (binary values, names and folders not UTF-8), ACLs, a capability and trusted.* exactly, on files, folders and symlinks', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const at = await restore('whole');
    const want = attributesOf(src);
    assert.deepEqual(attributesOf(at), want);
    assert.match(want.xattrs, /user\.binary=0x00ff0102fe/);
    assert.match(want.xattrs, /trusted\.on-link=0x31/);
    assert.match(want.acls, /default:user:nobody:rwx/);
    assert.match(want.caps, /ping cap_net_raw=ep/);
    // The capability survived the restore's chown (which clears it) and chmod.
    assert.equal(execFileSync('getcap', [join(at, 'ping')]).toString().trim(), `${join(at, 'ping')} cap_net_raw=ep`);
    assert.equal((await fs.stat(join(at, 'big.bin'))).mode & 0o777, 0o444);
  });

  it('a changed, added or removed attribute alone is in the next backup (it changes the ctime, so the entry is read again)', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const s2 = await Sandbox.create('holdfast-xattrs-change-');
    try {
      const tree = s2.path('src');
      mkdirSync(tree);
      sh(tree, MAKE_SOURCE);
      await s2.ok(['init']);
      await s2.ok(['backup', '-q', tree]);
      const before = attributesOf(tree);
      sh(tree, String.raw`
        setfattr -n user.binary -v 0x07 "$(printf 'dir-\xff\xfe')/file"
        setfattr -n user.added -v new plain/none
        setfattr -x user.big big.bin
        setfacl -x u:nobody acl.txt
        setfattr -n trusted.note -v changed plain
        setfattr -n user.mid -v rechunked mid.bin
        setfattr -x user.large large.bin
      `);
      const changed = attributesOf(tree);
      assert.notDeepEqual(changed, before);
      await s2.ok(['backup', '-q', tree]);
      const target = s2.path('restored');
      await s2.ok(['restore', 'latest', '--target', target]);
      assert.deepEqual(attributesOf(join(target, tree)), changed);
      // diff says U (metadata) for each entry whose attributes alone changed.
      const [first, second] = await snapshotsOf(s2);
      const diff = (await s2.ok(['diff', first!.id, second!.id])).stdoutBytes.toString('latin1');
      // (diff prints a name that is not UTF-8 with replacement characters.)
      for (const p of [/\/dir-[^/]+\/file\n/, /\/plain\/none\n/, /\/big\.bin\n/, /\/acl\.txt\n/, /\/plain\/\n/, /\/mid\.bin\n/, /\/large\.bin\n/]) assert.match(diff, new RegExp(`^U {4}${tree}${p.source}`, 'm'));
      assert.ok(!diff.includes(`${tree}/ping`), diff);
    } finally {
      await removeTree(s2.dir);
    }
  });

  it('a restore as another user restores what it may and warns, naming the file and the attribute, for trusted.* and the capability; exit 0', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const target = s.path('as-nobody');
    await fs.mkdir(target);
    await fs.chown(target, nobody.uid, nobody.gid);
    await fs.chmod(s.dir, 0o755);
    execFileSync('chmod', ['-R', 'a+rX', s.repo]);
    const r = await s.run(['restore', snap, '--target', target], { asUser: nobody, env: { HOLDFAST_CACHE_DIR: s.path('nobody-cache') }, cwd: s.dir });
    assert.equal(r.code, 0, r.stderr);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('warning: '));
    assert.deepEqual(warnings.sort(), [
      `warning: ${join(src, 'link')}: extended attributes not restored: trusted.on-link (EPERM)`,
      `warning: ${join(src, 'ping')}: extended attributes not restored: security.capability (EPERM)`,
      `warning: ${join(src, 'plain')}: extended attributes not restored: trusted.note (EPERM)`,
    ]);
    const at = join(target, src);
    // Everything but trusted.* and the capability, which an unprivileged user can neither set nor see.
    const visible = (l: string): boolean => !/^(trusted\.|security\.capability)/.test(l);
    const got = attributesOf(at, visible);
    assert.equal(got.xattrs, attributesOf(src, visible).xattrs);
    assert.match(got.xattrs, /user\.big=0x7878/, 'the read-only file got its user.* attribute');
    assert.equal((await fs.stat(join(at, 'big.bin'))).mode & 0o777, 0o444);
    assert.equal(got.caps.trim(), '');
  });

  it('restore --overwrite of files and folders already there leaves exactly the snapshot\'s attributes, removing others', async (t) => {
    if (skipReason) return t.skip(skipReason);
    for (const overwrite of ['if-changed', 'always']) {
      const at = await restore(`again-${overwrite}`);
      const odd = Buffer.from('dir-\xff\xfe', 'latin1');
      sh(at, String.raw`
        odd=$(printf 'dir-\xff\xfe')
        setfattr -n user.stray -v x "$odd/file"
        setfattr -x user.binary "$odd/file"
        setfattr -n user.stray -v x plain
        setfattr -n user.stray -v x plain/none
        setfacl -m u:nobody:rwx plain/none
        setcap -r ping
      `);
      await s.ok(['restore', snap, '--target', s.path(`again-${overwrite}`), '--overwrite', overwrite]);
      assert.deepEqual(attributesOf(at), attributesOf(src), overwrite);
      assert.ok(!xattrsAt(join(at, 'plain', 'none')).has('user.stray'));
      assert.ok(existsSync(Buffer.concat([Buffer.from(at), Buffer.from('/'), odd])));
    }
  });

  it('a restore into a folder with a default ACL gives restored files no ACL the snapshot lacks', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const target = s.path('into-acl');
    await fs.mkdir(target);
    execFileSync('setfacl', ['-d', '-m', 'u:nobody:rwx', target]);
    const at = await restore('into-acl');
    assert.deepEqual(attributesOf(at), attributesOf(src));
    assert.equal(xattrsAt(join(at, 'plain', 'none')).size, 0);
  });

  it('a target file system without extended attributes (ramfs) restores the files and warns for each refused attribute; a backup from it records none, quietly', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const target = s.path('ramfs');
    await fs.mkdir(target);
    if (spawnSync('mount', ['-t', 'ramfs', 'none', target]).status !== 0) return t.skip('cannot mount a ramfs here');
    try {
      const r = await s.run(['restore', snap, '--target', target]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`warning: ${join(src, 'acl.txt')}: extended attributes not restored: system.posix_acl_access \\(ENOTSUP\\)`));
      assert.match(r.stderr, new RegExp(`warning: ${join(src, 'big.bin')}: extended attributes not restored: user.big \\(ENOTSUP\\)`));
      assert.equal(await fs.readFile(join(target, src, 'plain', 'none'), 'utf8'), 'nothing');
      const b = await s.run(['backup', join(target, src)]);
      assert.equal(b.code, 0, b.stderr);
      assert.doesNotMatch(b.stderr, /warning/);
    } finally {
      execFileSync('umount', [target]);
    }
  });

  it('ls -l marks an ACL with +, ls --json and cat blob give names and values, and dump writes SCHILY.xattr records that GNU tar restores', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const long = (await s.ok(['ls', '-l', snap, src])).stdout;
    assert.match(long, /^-\S{9}\+ .* \S+\/acl\.txt$/m);
    assert.match(long, /^d\S{9}\+ .* \S+\/shared$/m);
    assert.match(long, /^-r--r--r-- .* \S+\/big\.bin$/m);
    const entries = (await s.ok(['ls', '--json', snap, src])).stdoutBytes.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; xattrs?: Record<string, string>[] });
    const file = entries.find((e) => e.path.endsWith('/file'));
    assert.deepEqual(file?.xattrs, [
      { name: 'user.binary', value_b64: Buffer.from('00ff0102fe', 'hex').toString('base64') },
      { name: 'user.empty', value: '' },
      { name_b64: Buffer.from('user.n\xe9\xff', 'latin1').toString('base64'), value: '\u0000\u0001\u0002' },
    ]);
    assert.equal(entries.find((e) => e.path.endsWith('/plain/none'))?.xattrs, undefined);
    assert.deepEqual(entries.find((e) => e.path.endsWith('/ping'))?.xattrs?.map((x) => x['name']), ['security.capability']);

    // cat blob: the tree of src, reached from the snapshot's root tree one folder at a time.
    let tree = (JSON.parse((await s.ok(['cat', 'snapshot', snap])).stdout) as { tree: string }).tree;
    type Listed = { name?: string; subtree?: string; xattrs?: Record<string, string>[] };
    let nodes: Listed[] = [];
    for (const part of ['', ...src.split('/').filter((p) => p !== '')]) {
      if (part !== '') tree = nodes.find((n) => n.name === part)!.subtree!;
      nodes = (JSON.parse((await s.ok(['cat', 'blob', tree])).stdout) as { nodes: Listed[] }).nodes;
    }
    assert.deepEqual(nodes.find((n) => n.name === 'plain')?.xattrs, [{ name: 'trusted.note', value: 'secret' }]);
    assert.deepEqual(nodes.find((n) => n.name === 'big.bin')?.xattrs?.map((x) => x['name']), ['user.big']);

    const tar = s.path('dump.tar');
    await fs.writeFile(tar, (await s.ok(['dump', '-q', snap, src])).stdoutBytes);
    const out = s.path('untarred');
    await fs.mkdir(out);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xpf', tar, '-C', out]);
    assert.deepEqual(attributesOf(join(out, src)), attributesOf(src));
  });

  it('the FUSE mount shows the attributes (getfattr, getcap)', async (t) => {
    if (skipReason) return t.skip(skipReason);
    if (!existsSync('/dev/fuse') || spawnSync('fusermount', ['-V']).error) return t.skip('no /dev/fuse or fusermount on this machine');
    const mnt = s.path('mnt');
    await fs.mkdir(mnt);
    const m = s.start(['mount', mnt]);
    try {
      await new Promise<void>((resolve, reject) => {
        let text = '';
        m.child.stdout!.on('data', (b: Buffer) => {
          text += b.toString();
          if (/mounted/.test(text)) resolve();
        });
        void m.done.then((r) => reject(new Error(`mount ended: ${r.stderr}`)));
      });
      const at = join(mnt, 'ids', snap.slice(0, 8), src);
      assert.equal(execFileSync('getcap', [join(at, 'ping')]).toString().trim(), `${join(at, 'ping')} cap_net_raw=ep`);
      assert.deepEqual(xattrsAt(join(at, 'plain')), xattrsAt(join(src, 'plain')));
      assert.deepEqual(xattrsAt(join(at, 'shared')), xattrsAt(join(src, 'shared')));
      assert.equal(xattrsAt(join(at, 'big.bin')).get('user.big'), xattrsAt(join(src, 'big.bin')).get('user.big'));
      const none = spawnSync('getfattr', ['-n', 'user.nothing', join(at, 'plain', 'none')]);
      assert.match(none.stderr.toString(), /No such attribute/);
    } finally {
      m.child.kill('SIGTERM');
      await m.done;
    }
  });

  it('keeps SELinux labels where the system has SELinux', async (t) => {
    if (!existsSync('/sys/fs/selinux')) return t.skip('this kernel has no SELinux (/sys/fs/selinux is absent): no labels to keep');
    if (skipReason) return t.skip(skipReason);
    const at = await restore('selinux');
    const label = (p: string): string | undefined => xattrsAt(p).get('security.selinux');
    assert.ok(label(join(src, 'plain', 'none')) !== undefined);
    assert.equal(label(join(at, 'plain', 'none')), label(join(src, 'plain', 'none')));
  });
});
