/**
 * The layering rule of eslint.config.js: a file of a lower layer of src/
 * that imports a higher one fails `npm run lint`, and imports going down or
 * within a layer pass. Runs ESLint's API on small virtual files.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ESLint } from 'eslint';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

let eslint: ESLint;
let layers: readonly string[];

/** The messages of the layering rule for `code` linted as if it were the file `path` (relative to the root). */
async function layeringErrors(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, path) });
  assert.ok(result);
  return result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

/** A file that imports one name of `from` and uses it. */
const importing = (from: string): string => `import { x } from '${from}';\nexport const y = x;\n`;

describe('layering (eslint.config.js)', () => {
  before(async () => {
    eslint = new ESLint({ cwd: ROOT });
    ({ LAYERS: layers } = await import(pathToFileURL(join(ROOT, 'eslint.config.js')).href) as { LAYERS: readonly string[] });
  });

  it('src/repo importing src/cli fails, naming what src/repo may import', async () => {
    const errors = await layeringErrors('src/repo/probe.ts', importing('../cli/context.js'));
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /src\/repo may import only from node modules, src\/core, src\/storage: imports go down/);
  });

  it('the layers are core, storage, repo, sources, jobs, api, server-nbd, server, agent, cli, bottom-up', () => {
    assert.deepEqual(layers, ['core', 'storage', 'repo', 'sources', 'jobs', 'api', 'server-nbd', 'server', 'agent', 'cli']);
  });

  it('every layer, from its folder or one below it, fails on each layer above and passes on each below', async () => {
    for (const [i, layer] of layers.entries()) {
      for (const [j, other] of layers.entries()) {
        if (i === j) continue;
        for (const [path, up] of [[`src/${layer}/probe.ts`, '..'], [`src/${layer}/deep/er/probe.ts`, '../../..']] as const) {
          const errors = await layeringErrors(path, importing(`${up}/${other}/a.js`));
          assert.equal(errors.length, j > i ? 1 : 0, `${path} importing src/${other}: ${errors.join('; ')}`);
        }
      }
    }
  });

  it('type imports and re-exports upward fail too', async () => {
    const code = "import type { X } from '../jobs/a.js';\nexport type { X };\nexport * from '../cli/b.js';\nexport { y } from '../sources/c.js';\n";
    assert.equal((await layeringErrors('src/repo/probe.ts', code)).length, 3);
  });

  it('imports within a layer, of node modules, and from tests pass', async () => {
    assert.deepEqual(await layeringErrors('src/jobs/backup/probe.ts', importing('../restore/restorer.js')), []);
    assert.deepEqual(await layeringErrors('src/core/probe.ts', "import { createHash } from 'node:crypto';\nexport const h = createHash;\n"), []);
    assert.deepEqual(await layeringErrors('test/repo/probe.ts', importing('../../src/cli/context.js')), []);
  });
});
