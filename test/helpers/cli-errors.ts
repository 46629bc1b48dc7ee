/**
 * How the CLI reports a failure: one `holdfast: ...` line on stderr and no
 * stack trace. Assertions for tests that make it fail on purpose.
 */
import assert from 'node:assert/strict';
import type { RunResult } from './cli.js';

/** Matches the first frame of a printed stack trace. */
export const STACK = /\n\s+at /;

/** The `holdfast:` lines of stderr; asserts there is no stack trace. */
export function errorLines(r: RunResult): string[] {
  assert.doesNotMatch(r.stderr, STACK, 'stderr shows a stack trace');
  return r.stderr.split('\n').filter((l) => l.startsWith('holdfast: '));
}

/** Asserts the exit code and returns the single `holdfast: ...` error line (no stack trace), which must match `message`. */
export function failsWith(r: RunResult, code: number, message: RegExp): string {
  assert.equal(r.code, code, `exit code ${r.code}, wanted ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const lines = errorLines(r);
  assert.equal(lines.length, 1, `want one "holdfast:" line, stderr was:\n${r.stderr}`);
  assert.match(lines[0]!, message);
  return lines[0]!;
}
