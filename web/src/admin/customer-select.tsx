/** Choosing a customer: a list for provider staff; a customer's own people have theirs, fixed. */
import type { CustomerBody, UserBody } from '../../../src/api/v1.js';
import { isProviderRole } from '../session.js';

export function CustomerSelect({ user, customers, value, onChange, name = 'customer', optional }: {
  user: UserBody; customers: CustomerBody[] | undefined; value: string; onChange: (id: string) => void; name?: string;
  /** The words of the choice of no customer, when there is one. */
  optional?: string;
}) {
  if (!isProviderRole(user)) return null;
  return (
    <label>Customer
      <select name={name} aria-label="Customer" value={value} onChange={(e) => onChange(e.target.value)} required={!optional}>
        <option value="">{optional ?? 'choose…'}</option>
        {customers?.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
      </select>
    </label>
  );
}

/** The customer a form acts for: the chosen one, or the person's own. */
export const customerFor = (user: UserBody, chosen: string): string => (isProviderRole(user) ? chosen : user.customer_id ?? '');
