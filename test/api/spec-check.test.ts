/**
 * The agent's own check of a job against the API's schemas: what a server
 * that was taken over could send outside the vocabulary is refused with the
 * problem named, and every kind's valid spec passes.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { checkJobSpec, JobSpecError } from '../../src/api/spec-check.js';

it('passes every kind\'s valid spec', () => {
  assert.equal(checkJobSpec('backup', { paths: ['/srv', '/etc'], excludes: ['*.tmp'] }), 'backup');
  assert.equal(checkJobSpec('image-backup', { sources: ['/dev/vdb'] }), 'image-backup');
  assert.equal(checkJobSpec('command-backup', { command: ['pg_dump', 'app'], name: 'app.sql' }), 'command-backup');
  assert.equal(checkJobSpec('restore', { snapshot: 'latest', target: '/restore', paths: ['/srv/a'] }), 'restore');
  assert.equal(checkJobSpec('check', {}), 'check');
  assert.equal(checkJobSpec('check', { read_data_subset: '1/5' }), 'check');
  assert.equal(checkJobSpec('verify-restore', {}), 'verify-restore');
  assert.equal(checkJobSpec('verify-restore', { snapshot: 'abcd1234', share: 0.5, min_files: 10 }), 'verify-restore');
});

it('refuses what is outside the vocabulary, naming the problem', () => {
  const bad: [string, unknown, RegExp][] = [
    ['shell', { command: 'rm -rf /' }, /job kind "shell" is not one this agent runs/],
    ['backup', {}, /spec must have paths/],
    ['backup', { paths: [] }, /spec\.paths needs at least 1 item/],
    ['backup', { paths: ['relative'] }, /spec\.paths\[0\] must match pattern/],
    ['backup', { paths: ['/srv'], command: ['sh'] }, /spec must not have command/],
    ['backup', 'paths', /spec must be an object/],
    ['restore', { snapshot: '../x', target: '/r' }, /spec\.snapshot must match pattern/],
    ['command-backup', { command: ['sh'], name: '../../etc/passwd' }, /spec\.name must match pattern/],
    ['command-backup', { command: ['sh'], name: '..' }, /spec\.name must match pattern/],
    ['command-backup', { command: 'sh -c x', name: 'x' }, /spec\.command must be an array/],
    ['check', { read_data_subset: 'all' }, /spec\.read_data_subset must match pattern/],
    ['verify-restore', { share: 150 }, /spec\.share must be at most 100/],
    ['verify-restore', { share: 0 }, /spec\.share must be at least 0\.001/],
    ['verify-restore', { min_files: 1.5 }, /spec\.min_files must be an integer/],
    ['verify-restore', { snapshot: 'latest', target: '/' }, /spec must not have target/],
  ];
  for (const [kind, spec, why] of bad) {
    assert.throws(() => checkJobSpec(kind, spec), (e: unknown) => e instanceof JobSpecError && why.test(e.message), `${kind} ${JSON.stringify(spec)}`);
  }
});
