/**
 * A repository as holdfast wrote it before BLAKE3 blob ids: its config has
 * no `blobIds` field, which means HMAC-SHA256 (docs/format.md §4.1).
 */
import type { Backend } from '../../src/storage/backend.js';
import { Repository } from '../../src/repo/repository.js';
import { encodeConfig } from '../../src/repo/config.js';
import { TEST_PASSWORD } from './memory-repo.js';

/** Rewrites the config of a fresh, empty repository without `blobIds` and opens it again. */
export async function withoutBlobIdsField(backend: Backend, password = TEST_PASSWORD): Promise<Repository> {
  const h = { type: 'config', name: 'config' } as const;
  const { blobIds: _, ...older } = (await Repository.readConfig(backend));
  await backend.remove(h);
  await backend.save(h, encodeConfig(older as never));
  return Repository.open(backend, password);
}
