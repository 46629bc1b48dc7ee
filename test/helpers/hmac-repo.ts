/**
 * A repository as holdfast wrote it before BLAKE3 blob ids: its config has
 * no `blobIds` field, which means HMAC-SHA256 (docs/format.md §4.1).
 */
import type { Backend } from '../../src/storage/backend.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { readConfig } from '../../src/repo/objects.js';
import { encodeConfig } from '../../src/repo/config.js';
import { macKey } from '../../src/core/crypto.js';
import { TEST_PASSWORD } from './memory-repo.js';
import { masterKeyOf } from './master-key.js';

/** Rewrites the config of a fresh, empty repository without `blobIds` (with its MAC, as the key holder) and opens it again. */
export async function withoutBlobIdsField(backend: Backend, password = TEST_PASSWORD): Promise<Repository> {
  const h = { type: 'config', name: 'config' } as const;
  const { blobIds: _, ...older } = (await readConfig(backend)).config;
  const key = macKey(await masterKeyOf(backend, password), 'config');
  await backend.remove(h);
  await backend.save(h, encodeConfig(older as never, key));
  return Repository.open(await Store.open(backend), password);
}
