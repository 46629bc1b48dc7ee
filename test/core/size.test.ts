/**
 * The one size grammar of the CLI (--exclude-larger-than, --block-size,
 * --read-data-subset): restic's forms, byte suffixes, fractions rounded down.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseSize } from '../../src/core/size.js';
import { parseSubset } from '../../src/jobs/check/subset.js';
import { parseBlockSize } from '../../src/cli/cmd-backup-image.js';

describe('parseSize', () => {
  it('reads restic\'s forms, byte suffixes and fractions', () => {
    const cases: [string, number][] = [
      ['500', 500], ['500b', 500], ['500B', 500], ['64k', 65_536], ['64K', 65_536], ['64KiB', 65_536], ['64 kb', 65_536],
      ['2G', 2 * 1024 ** 3], ['1t', 1024 ** 4], ['1.5G', 1.5 * 1024 ** 3], ['0.5k', 512], [' 3m ', 3 * 1024 ** 2],
    ];
    for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
  });

  it('refuses what is not a size', () => {
    for (const text of ['', 'k', '1x', '-1', '1kk', '1 k b', '1ib', '1e3', '99999999999999999999t']) assert.equal(parseSize(text), undefined, text);
  });

  it('every option that takes a size takes the same forms', () => {
    assert.equal(parseBlockSize('64 KiB'), 65_536);
    assert.equal(parseBlockSize('0.5M'), 512 * 1024);
    assert.deepEqual(parseSubset('64 KiB'), { kind: 'bytes', bytes: 65_536 });
    assert.deepEqual(parseSubset('1.5k'), { kind: 'bytes', bytes: 1536 });
  });
});
