/** Choosing a customer: a list for provider staff; a customer's own people have theirs, fixed. */
import type { CustomerBody, UserBody } from '../../../src/api/v1.js';
import type { ApiClient } from '../api/client.js';
import { useLoad, type Loaded } from '../load.js';
import { isProviderRole, useSession, useUser } from '../session.js';

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

/** An administration list, with the customers its rows name (loaded for provider staff only: a customer's people see their own). */
export interface ListWithCustomers<T> {
  readonly data: Loaded<{ items: T[]; customers: CustomerBody[] }>;
  /** The customers' names by id. */
  readonly customerName: ReadonlyMap<string, string>;
  readonly provider: boolean;
}

export function useListWithCustomers<T>(list: (api: ApiClient) => Promise<T[]>): ListWithCustomers<T> {
  const { api } = useSession();
  const provider = isProviderRole(useUser());
  const data = useLoad(async () => {
    const [items, customers] = await Promise.all([list(api), provider ? api.customers() : Promise.resolve([])]);
    return { items, customers };
  }, [api, provider]);
  return { data, customerName: new Map(data.data?.customers.map((c) => [c.id, c.name])), provider };
}
