/**
 * Every `--json` output names its fields in snake_case, as restic's do: each
 * command that prints JSON runs once on a small repository, and no key
 * anywhere in what it printed has an uppercase letter.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';

/** Every object key in `v`, at any depth, with the path that leads to it. */
function keysOf(v: unknown, at: string, out: string[]): string[] {
  if (Array.isArray(v)) v.forEach((x, i) => keysOf(x, `${at}[${i}]`, out));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) keysOf(x, `${at}.${out.push(k) && k}`, out);
  return out;
}

/** The JSON values a command printed: one document, or one per line. */
function documents(stdout: string): unknown[] {
  try {
    return [JSON.parse(stdout)];
  } catch {
    return stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as unknown);
  }
}

describe('--json key names', () => {
  let s: Sandbox;
  const dst = (): string => s.path('dst');
  before(async () => {
    s = await Sandbox.create();
    await fs.mkdir(s.path('src'));
    await fs.writeFile(s.path('src', 'a.txt'), 'hello\n'.repeat(100));
    await s.ok(['init']);
    await s.ok(['backup', s.path('src')]);
    await fs.writeFile(s.path('src', 'b.txt'), 'world\n');
    await s.ok(['backup', s.path('src')]);
    await s.ok(['-r', dst(), 'init', '--copy-from', s.repo], { env: { HOLDFAST_FROM_PASSWORD: 'correct horse' } });
  });
  after(() => s.remove());

  const commands: readonly (readonly string[])[] = [
    ['version'],
    ['backup', '<src>'],
    ['snapshots'],
    ['ls', 'latest'],
    ['find', 'a.txt'],
    ['diff', '<first>', 'latest'],
    ['stats'],
    ['check', '--read-data'],
    ['key', 'list'],
    ['restore', 'latest', '--target', '<target>'],
    ['forget', '--keep-last', '1', '--dry-run'],
    ['prune', '--dry-run'],
    ['repair', 'index'],
    ['repair', 'snapshots', '--forget-damaged', '--dry-run'],
    ['unlock'],
    ['-r', '<dst>', 'copy', '--from-repo', '<repo>'],
  ];
  for (const args of commands) {
    it(args.filter((a) => !a.startsWith('<') && !a.startsWith('-')).join(' '), async () => {
      const first = (JSON.parse((await s.ok(['snapshots', '--json'])).stdout) as { id: string; time: string }[]).sort((a, b) => a.time.localeCompare(b.time))[0]!.id;
      const fill: Record<string, string> = { '<src>': s.path('src'), '<first>': first, '<target>': s.path(`t-${Math.random().toString(36).slice(2)}`), '<dst>': dst(), '<repo>': s.repo };
      const r = await s.ok(['--json', ...args.map((a) => fill[a] ?? a)]);
      const docs = documents(r.stdout);
      assert.ok(docs.length > 0, 'it printed JSON');
      const keys = docs.flatMap((d, i) => keysOf(d, `#${i}`, []));
      assert.deepEqual(keys.filter((k) => /[A-Z]/.test(k)), [], `keys with capitals in ${r.stdout}`);
    });
  }
});
