/**
 * S3 repository locations: restic's forms parse to an endpoint, a bucket, a
 * prefix and the addressing style; malformed ones are refused with a message
 * that says what is wrong, and credentials are never taken from a location.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { formatS3Location, parseS3Location } from '../../src/storage/s3-backend-config.js';

describe('parseS3Location', () => {
  it('takes a self-hosted endpoint, with path-style addressing', () => {
    assert.deepEqual(parseS3Location('https://127.0.0.1:9000/safe/hosts/web1'), {
      endpoint: 'https://127.0.0.1:9000', bucket: 'safe', prefix: 'hosts/web1', pathStyle: true, region: undefined,
    });
    assert.deepEqual(parseS3Location('http://[::1]:9000/safe'), {
      endpoint: 'http://[::1]:9000', bucket: 'safe', prefix: '', pathStyle: true, region: undefined,
    });
    assert.deepEqual(parseS3Location('minio.lan:9000/safe/p/'), {
      endpoint: 'https://minio.lan:9000', bucket: 'safe', prefix: 'p', pathStyle: true, region: undefined,
    }, 'a bare host is https, a trailing slash is dropped');
  });

  it('takes AWS hosts as AWS: no endpoint, virtual-hosted addressing, the region the host names', () => {
    assert.deepEqual(parseS3Location('s3.amazonaws.com/safe/p'), {
      endpoint: undefined, bucket: 'safe', prefix: 'p', pathStyle: false, region: undefined,
    });
    assert.deepEqual(parseS3Location('https://s3.eu-central-1.amazonaws.com/safe'), {
      endpoint: undefined, bucket: 'safe', prefix: '', pathStyle: false, region: 'eu-central-1',
    });
    assert.equal(formatS3Location(parseS3Location('s3.eu-central-1.amazonaws.com/safe/x')), 's3:https://s3.eu-central-1.amazonaws.com/safe/x');
  });

  it('decodes percent-encoded prefixes', () => {
    assert.equal(parseS3Location('https://h/b-1/a%20b/c').prefix, 'a b/c');
  });

  it('refuses malformed locations, saying why', () => {
    for (const [rest, why] of [
      ['', /it is empty/],
      ['https://host', /names no bucket/],
      ['https://host/', /names no bucket/],
      ['bucket-only', /names no bucket/],
      ['https://host/Bad_Bucket', /"Bad_Bucket" is not a valid bucket name/],
      ['https://host/ab', /"ab" is not a valid bucket name/],
      ['https://host/bucket/a//b', /empty, "\." or "\.\." parts/],
      ['https://host/bucket/../x', /empty, "\." or "\.\." parts/],
      ['host/bucket/./x', /empty, "\." or "\.\." parts/],
      ['https://host/bucket/a/%2e%2e', /empty, "\." or "\.\." parts/],
      ['https://host/bucket/%zz', /not valid percent-encoding/],
      ['https://key:secret@host/bucket', /credentials do not belong in the location: set AWS_ACCESS_KEY_ID/],
      ['https://host/bucket?versionId=1', /query/],
      ['ftp://host/bucket', /only http:\/\/ and https:\/\//],
      ['https://[bad/bucket', /not a valid URL/],
    ] as const) {
      assert.throws(() => parseS3Location(rest), (e: Error) => {
        assert.ok(e.message.startsWith(`bad S3 location "s3:${rest}": `), e.message);
        assert.match(e.message, why, rest);
        return true;
      });
    }
  });
});
