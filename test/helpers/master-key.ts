/**
 * The master key of a repository, unwrapped from its key files as
 * `Repository.open` does, for tests that write objects the way a holder of
 * the key would but without the code that normally writes them (a config of
 * an older shape, a snapshot written without the fence).
 */
import { macKey, type MasterKey } from '../../src/core/crypto.js';
import { decodeKeyFile, unwrapMasterKey } from '../../src/repo/key-file.js';
import { readConfig } from '../../src/repo/objects.js';
import { encodeSnapshot, type Snapshot } from '../../src/repo/snapshot.js';
import type { Backend } from '../../src/storage/backend.js';
import { TEST_PASSWORD } from './memory-repo.js';

/** The master key that the first key file opening with `password` wraps. */
export async function masterKeyOf(backend: Backend, password = TEST_PASSWORD): Promise<MasterKey> {
  const config = (await readConfig(backend)).config;
  for await (const info of backend.list('key')) {
    const what = `key ${info.name}`;
    const file = decodeKeyFile(await backend.load({ type: 'key', name: info.name }), what);
    try {
      return await unwrapMasterKey(file, password, config.id, what);
    } catch {
      // another password's key file
    }
  }
  throw new Error('no key file opens with the password');
}

/** A snapshot object with its MAC, as `Repository.saveSnapshot` would write it. */
export async function signedSnapshot(backend: Backend, s: Snapshot, password = TEST_PASSWORD): Promise<Buffer> {
  return encodeSnapshot(s, macKey(await masterKeyOf(backend, password), 'snapshot'));
}
