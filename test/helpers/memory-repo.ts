/**
 * An in-memory repository with cheap scrypt settings, for unit tests of the
 * layers above storage (restic's repository/testing.go).
 */
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { Repository, type InitOptions } from '../../src/repo/repository.js';

export const TEST_PASSWORD = 'test password';

export async function memoryRepo(opts: InitOptions = {}): Promise<{ backend: MemoryBackend; repo: Repository }> {
  process.env['HOLDFAST_SCRYPT_N'] ??= '1024';
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, TEST_PASSWORD, opts);
  return { backend, repo };
}
