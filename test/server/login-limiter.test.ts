/** The login limiter on a clock the test moves: per account, per address, and the sliding minute. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { LoginLimiter } from '../../src/server/services/login-limiter.js';

it('stops an account after 5 failures and an address after 20, each for what is left of the minute', () => {
  let now = 1_000_000;
  const l = new LoginLimiter(undefined, () => now);
  for (let i = 0; i < 5; i++) {
    assert.equal(l.retryAfter('ann', '10.0.0.1'), 0);
    l.fail('ann', '10.0.0.1');
    now += 1000;
  }
  assert.equal(l.retryAfter('ann', '10.0.0.2'), 55, 'the account is stopped from any address');
  assert.equal(l.retryAfter('ben', '10.0.0.1'), 0, 'the address is not stopped by one account');
  now += 55_000;
  assert.equal(l.retryAfter('ann', '10.0.0.1'), 0, 'the oldest failure left the window');
  l.fail('ann', '10.0.0.1');
  assert.equal(l.retryAfter('ann', '10.0.0.1'), 1);
  l.succeed('ann');
  assert.equal(l.retryAfter('ann', '10.0.0.1'), 0);

  now += 60_000;
  for (let i = 0; i < 19; i++) l.fail(`user${i}`, '10.0.0.1');
  assert.equal(l.retryAfter('zed', '10.0.0.1'), 0);
  l.fail('user19', '10.0.0.1');
  assert.equal(l.retryAfter('zed', '10.0.0.1'), 60, 'twenty failures from one address stop it for every account');
  assert.equal(l.retryAfter('zed', '10.0.0.9'), 0);
});
