/** Administration: its sections as tabs, each at its own address (/admin/customers, …); what a role may not do is not offered. */
import { Navigate, NavLink, Route, Routes } from 'react-router';
import { NotFound } from '../pages/not-found.js';
import { isProviderRole, useUser } from '../session.js';
import { CustomersSection } from './customers.js';
import { EnrolSection } from './enrol.js';
import { NotificationsSection } from './notifications.js';
import { TokensSection } from './tokens.js';
import { UsersSection } from './users.js';

export function AdminPage() {
  const user = useUser();
  const provider = isProviderRole(user);
  return (
    <section className="page">
      <h1>Administration</h1>
      <nav className="tabs" aria-label="administration">
        {provider ? <NavLink to="/admin/customers">Customers</NavLink> : null}
        <NavLink to="/admin/users">Users</NavLink>
        <NavLink to="/admin/tokens">Tokens</NavLink>
        <NavLink to="/admin/notifications">Notifications</NavLink>
        <NavLink to="/admin/enrol">Enrol a machine</NavLink>
      </nav>
      <Routes>
        <Route index element={<Navigate to={provider ? 'customers' : 'users'} replace />} />
        {provider ? <Route path="customers" element={<CustomersSection />} /> : null}
        <Route path="users" element={<UsersSection />} />
        <Route path="tokens" element={<TokensSection />} />
        <Route path="notifications" element={<NotificationsSection />} />
        <Route path="enrol" element={<EnrolSection />} />
        <Route path="*" element={<NotFound />} />
      </Routes>
    </section>
  );
}
