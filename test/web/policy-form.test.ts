/** The machine page's schedule form without a browser (web/src/lib/policy-form.ts): settings to text and back, refusals in words, the other settings kept. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { formToSchedule, scheduleToForm, withSchedule } from '../../web/src/lib/policy-form.js';

const EMPTY = scheduleToForm(undefined);

it('turns settings into the form and back', () => {
  const settings = { schedule: 'every 6h', window: '22:00-06:00', time_zone: 'Europe/Berlin', verify: { every: '1d', read_data_subset_days: 30 }, restore_test: { every: '7d', share: 5, min_files: 3 } };
  const form = scheduleToForm(settings);
  assert.deepEqual(form, { schedule: 'every 6h', window: '22:00-06:00', time_zone: 'Europe/Berlin', verify_every: '1d', verify_days: '30', restore_every: '7d', restore_share: '5' });
  assert.deepEqual(formToSchedule(form, 3), settings);
  assert.deepEqual(formToSchedule(EMPTY), {}, 'empty fields: everything inherited');
  assert.deepEqual(formToSchedule({ ...EMPTY, schedule: '  0   2 * * 1-5 ' }), { schedule: '0 2 * * 1-5' });
  assert.deepEqual(formToSchedule({ ...EMPTY, restore_every: '12h' }), { restore_test: { every: '12h' } });
});

it('refuses what the server would refuse, in words', () => {
  const refused = (over: Partial<typeof EMPTY>, pattern: RegExp): void => assert.throws(() => formToSchedule({ ...EMPTY, ...over }), pattern);
  refused({ schedule: 'every day' }, /Schedule: "every day" is neither/);
  refused({ schedule: '0 2 * *' }, /five fields/);
  refused({ window: '22-06' }, /Window: "22-06" is not HH:MM-HH:MM/);
  refused({ window: '25:00-06:00' }, /Window/);
  refused({ time_zone: 'Mars/Olympus' }, /Time zone: "Mars\/Olympus"/);
  refused({ verify_every: '1d' }, /Verification: give both/);
  refused({ verify_every: '1 day', verify_days: '30' }, /Verification: "1 day" is not a duration/);
  refused({ verify_every: '1d', verify_days: '0' }, /from 1 to 3660/);
  refused({ restore_share: '5' }, /Restore test: give how often/);
  refused({ restore_every: '7d', restore_share: '150' }, /at most 100/);
});

it('replaces only the form\'s settings of a policy, keeping the others', () => {
  const own = { schedule: 'every 1h', retention: { keep_last: 3 }, verify: { every: '1d', read_data_subset_days: 7 }, timeout: '2h' };
  assert.deepEqual(withSchedule(own, { schedule: 'every 2h' }), { schedule: 'every 2h', retention: { keep_last: 3 }, timeout: '2h' });
});
