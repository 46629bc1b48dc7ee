/** A stored policy's settings without its record fields: what PUT /policies/ID takes back. */
import type { PolicyBody, PolicySettings } from '../../../src/api/v1-policies.js';

export function settingsOf(p: PolicyBody): PolicySettings {
  const { id: _id, customer_id: _c, machine_id: _m, safe_id: _s, attached_to: _a, created_at: _ca, updated_at: _u, updated_by: _b, ...settings } = p;
  return settings;
}
