/**
 * An in-memory repository with cheap scrypt settings, for unit tests of the
 * layers above storage (restic's repository/testing.go).
 */
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { Repository, type InitOptions } from '../../src/repo/repository.js';
import type { ScryptParams } from '../../src/core/crypto.js';

export const TEST_PASSWORD = 'test password';

/** Cheap KDF settings for test repositories (64 times less work than the default). */
export const TEST_SCRYPT: ScryptParams = { N: 1024, r: 8, p: 1 };

export async function memoryRepo(opts: InitOptions = {}): Promise<{ backend: MemoryBackend; repo: Repository }> {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, TEST_PASSWORD, { scrypt: TEST_SCRYPT, ...opts });
  return { backend, repo };
}
