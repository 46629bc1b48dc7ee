/**
 * What `copy` compares, without the key, before it moves a blob: the master
 * key's public name and the chunker parameters (src/jobs/copy/snapshot-copier.ts,
 * docs/format.md §19).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CopyRefusedError, refuseUnlessCompatible } from '../../src/jobs/copy/snapshot-copier.js';
import { newConfig, type RepoConfig } from '../../src/repo/config.js';
import { DEFAULT_CHUNKER_PARAMS } from '../../src/core/chunker.js';
import { masterKeyId, newMasterKey } from '../../src/core/crypto.js';

const KEY = masterKeyId(newMasterKey());
const source = newConfig(DEFAULT_CHUNKER_PARAMS, 1 << 24, 'default', KEY);
const sibling = (change: Partial<RepoConfig> = {}): RepoConfig => ({ ...newConfig(DEFAULT_CHUNKER_PARAMS, 1 << 20, 'max', KEY), ...change });

function refused(dst: RepoConfig, message: RegExp, src: RepoConfig = source): void {
  assert.throws(() => refuseUnlessCompatible(src, dst), (e: unknown) => e instanceof CopyRefusedError && message.test(e.message));
}

describe('copy: which repositories share blobs', () => {
  it('the same key and chunker copy (pack size and compression are each repository\'s own)', () => {
    refuseUnlessCompatible(source, sibling());
  });

  it('a master key is named by a one-way derivation: the same key gives the same name, another key another', () => {
    const k = newMasterKey();
    assert.equal(masterKeyId(k), masterKeyId(k));
    assert.notEqual(masterKeyId(k), masterKeyId(newMasterKey()));
    assert.match(KEY, /^[0-9a-f]{64}$/);
  });

  it('refuses another key, another chunker, and the repository itself', () => {
    refused(sibling({ masterKey: masterKeyId(newMasterKey()) }), /have different master keys/);
    refused(sibling({ chunker: { ...DEFAULT_CHUNKER_PARAMS, avgSize: DEFAULT_CHUNKER_PARAMS.avgSize * 2 } }), /not their chunker parameters/);
    refused(source, /the same repository/);
  });
});
