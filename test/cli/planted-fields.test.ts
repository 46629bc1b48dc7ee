/**
 * Snapshot fields a client holding the key chose to make hostile. Strings
 * (host names, tags, paths, file names) reach the terminal with their control
 * characters escaped (src/cli/printable.ts): planted ESC sequences cannot
 * recolour, retitle or clear the terminal of whoever lists the repository;
 * --json output keeps them exact. A summary of garbage numbers is damage:
 * `stats` skips the snapshot instead of printing NaN.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { printable, printableLines, printableMessage } from '../../src/cli/printable.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { Sandbox } from '../helpers/cli.js';

const HOST = '\u001b[31mRED\u001b[0m';
const TAG = 't\u001b]0;pwned\u0007';
const FILE = 'evil\u001b[2J\u009bname\nline';

/** Fails when `text` holds a control character other than the line breaks. */
function assertNoControls(text: string, what: string): void {
  const found = [...text].filter((c) => c !== '\n' && (c < ' ' || (c >= '\u007f' && c <= '\u009f')));
  assert.deepEqual(found, [], `${what} printed control characters: ${JSON.stringify(text)}`);
}

describe('printable', () => {
  it('escapes every control character, newlines too, and escaping twice changes nothing', () => {
    assert.equal(printable(HOST), '\\x1b[31mRED\\x1b[0m');
    assert.equal(printable(FILE), 'evil\\x1b[2J\\u009bname\\nline');
    assert.equal(printable('tab\there\r\u007f'), 'tab\\there\\r\\x7f');
    assert.equal(printable(printable(FILE)), printable(FILE));
    assert.equal(printable('plain ünïcode ✓'), 'plain ünïcode ✓');
    assert.equal(printableLines(`a\u001b\nb\n`), 'a\\x1b\nb\n');
  });

  it('escapes the bidirectional overrides and isolates and the Unicode line separators', () => {
    // "Trojan Source": U+202E makes the rest of the line read backwards; U+2028 breaks it in some viewers.
    assert.equal(printable('invoice\u202efdp.exe'), 'invoice\\u202efdp.exe');
    assert.equal(printable('a\u2066b\u2069c\u200fd\u061ce'), 'a\\u2066b\\u2069c\\u200fd\\u061ce');
    assert.equal(printable('one\u2028two\u2029'), 'one\\u2028two\\u2029');
    assert.equal(printable('arabic عربي and hebrew עברית stay'), 'arabic عربي and hebrew עברית stay');
  });

  it('an error message cannot print a line of its own: every line after the first is indented', () => {
    assert.equal(printableMessage('cannot open "x\nholdfast: all good"'), 'cannot open "x\n  holdfast: all good"');
    assert.equal(printableMessage('restore INCOMPLETE:\n  a: gone\n  b: gone'), 'restore INCOMPLETE:\n  a: gone\n  b: gone');
    assert.equal(printableMessage('one line'), 'one line');
  });
});

describe('the CLI prints repository strings with their control characters escaped', () => {
  let s: Sandbox;
  let src: string;
  before(async () => {
    s = await Sandbox.create('holdfast-escapes-');
    src = s.path('src');
    mkdirSync(src);
    writeFileSync(join(src, FILE), 'one');
    await s.ok(['init']);
    await s.ok(['backup', '--host', HOST, '--tag', TAG, src]);
    writeFileSync(join(src, FILE), 'two!');
    await s.ok(['backup', '--host', HOST, '--tag', TAG, src]);
  });
  after(() => s.remove());

  it('snapshots, ls, find, diff and forget show the escapes; --json keeps the strings exact', async () => {
    const shown = printable(FILE);
    const snapshots = await s.ok(['snapshots']);
    assert.match(snapshots.stdout, /\\x1b\[31mRED\\x1b\[0m +t\\x1b\]0;pwned\\x07 /);
    const ls = await s.ok(['ls', 'latest']);
    assert.ok(ls.stdout.includes(`${src}/${shown}\n`), ls.stdout);
    const long = await s.ok(['ls', '-l', 'latest']);
    assert.ok(long.stdout.includes(`${src}/${shown}\n`), long.stdout);
    const find = await s.ok(['find', 'evil*']);
    assert.ok(find.stdout.includes(`${src}/${shown}\n`), find.stdout);
    const ids = (JSON.parse((await s.ok(['snapshots', '--json'])).stdout) as { id: string; hostname: string; tags: string[] }[]);
    assert.deepEqual(ids.map((x) => [x.hostname, x.tags]), [[HOST, [TAG]], [HOST, [TAG]]], '--json keeps them exact');
    const diff = await s.ok(['diff', ids[0]!.id, ids[1]!.id]);
    assert.ok(diff.stdout.includes(`M    ${src}/${shown}\n`), diff.stdout);
    const forget = await s.ok(['forget', '--keep-last', '1', '--dry-run']);
    assert.match(forget.stdout, /snapshots of host \\x1b\[31mRED\\x1b\[0m/);
    const lsJson = await s.ok(['ls', '--json', 'latest']);
    assert.ok(lsJson.stdout.split('\n').filter((l) => l !== '').some((l) => (JSON.parse(l) as { path: string }).path === `${src}/${FILE}`));
    for (const [what, r] of Object.entries({ snapshots, ls, long, find, diff, forget })) {
      assertNoControls(r.stdout, what);
      assertNoControls(r.stderr, what);
    }
  });

  it('an error message that quotes such a string is escaped too (its own line breaks stay)', async () => {
    const r = await s.run(['dump', 'latest', `${src}/evil\u001b[2J\u009bx`]);
    assert.equal(r.code, 1, r.stderr);
    // After the line naming the snapshot searched, whose host is escaped as well.
    const [named, error, rest] = r.stderr.split('\n');
    assert.match(named!, /^dumping snapshot \w{8} of /);
    assert.ok(named!.endsWith(`(${printable(HOST)})`), named!);
    assertNoControls(named!, 'dump');
    assert.deepEqual([error, rest], [`holdfast: path ${src}/evil\\x1b[2J\\u009bx is not in the snapshot`, '']);
  });
});

describe('a snapshot whose summary holds garbage', () => {
  let s: Sandbox;
  after(() => s.remove());

  it('is damage: stats skips it with a warning and prints no NaN; check names it', async () => {
    s = await Sandbox.create('holdfast-summary-');
    const src = s.path('src');
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'abc');
    await s.ok(['init']);
    await s.ok(['backup', src]);
    const repo = await Repository.open(await Store.open(new LocalBackend(s.repo)), 'correct horse');
    await repo.loadIndex();
    const genuine = (await repo.listSnapshots()).ok[0]!.snapshot;
    const planted = await repo.newWriter().saveSnapshot({
      ...genuine, summary: { ...genuine.summary, filesNew: '1e400', totalBytes: { a: 1 } } as unknown as typeof genuine.summary,
    });
    await repo.close();
    const stats = await s.ok(['stats']);
    assert.match(stats.stdout, /^Snapshots: +1$/m);
    assert.match(stats.stdout, /^Files: +1$/m);
    assert.doesNotMatch(stats.stdout, /NaN/);
    assert.match(stats.stderr, new RegExp(`^warning: skipping snapshot ${planted}: snapshot ${planted} is damaged: bad summary\\.filesNew$`, 'm'));
    const check = await s.run(['check']);
    assert.equal(check.code, 1);
    assert.match(check.stderr, new RegExp(`^error: snapshot ${planted}: .*bad summary\\.filesNew`, 'm'));
  });
});
