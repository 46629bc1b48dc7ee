/**
 * The app's routes and its frame: the login (and the one-time password's
 * change) before anything else, then the navigation a person's role allows.
 *
 *   /                       fleet dashboard           (pages/fleet.tsx)
 *   /machines/:id           one machine                (pages/machine.tsx)
 *   /machines/:id/restore   the restore wizard         (pages/restore.tsx)
 *   /safes/:id/browse/*     the snapshot browser       (browse/, its own pages)
 *   /storage                used space over time       (pages/storage.tsx)
 *   /admin/...              customers, users, tokens, notifications, enrolment (admin/)
 */
import { NavLink, Route, Routes } from 'react-router';
import { AdminPage } from './admin/admin-page.js';
import { BrowsePage } from './browse/browse-page.js';
import { ChangePasswordPage } from './pages/change-password.js';
import { FleetPage } from './pages/fleet.js';
import { LoginPage } from './pages/login.js';
import { MachinePage } from './pages/machine.js';
import { RestorePage } from './pages/restore.js';
import { StoragePage } from './pages/storage.js';
import { NotFound } from './pages/not-found.js';
import { isProviderRole, mayManage, useSession, useUser } from './session.js';

export function App() {
  const { user } = useSession();
  if (!user) return <LoginPage />;
  if (user.must_change_password) return <ChangePasswordPage firstLogin />;
  return (
    <Layout>
      <Routes>
        <Route path="/" element={<FleetPage />} />
        <Route path="/machines/:id" element={<MachinePage />} />
        <Route path="/machines/:id/restore" element={<RestorePage />} />
        <Route path="/storage" element={<StoragePage />} />
        <Route path="/admin/*" element={<AdminPage />} />
        <Route path="/safes/:id/browse/*" element={<BrowsePage />} />
        <Route path="/account/password" element={<ChangePasswordPage />} />
        <Route path="*" element={<NotFound />} />
      </Routes>
    </Layout>
  );
}

function Layout({ children }: { children: React.ReactNode }) {
  const user = useUser();
  const { signOut } = useSession();
  const admin = isProviderRole(user) || mayManage(user);
  return (
    <div className="frame">
      <header className="top">
        <span className="brand">holdfast</span>
        <nav aria-label="main">
          <NavLink to="/" end>Fleet</NavLink>
          <NavLink to="/storage">Storage</NavLink>
          {admin ? <NavLink to="/admin">Administration</NavLink> : null}
        </nav>
        <span className="who">
          <NavLink to="/account/password" title="change your password">{user.name}</NavLink>
          <span className="role">{user.role}</span>
          <button type="button" className="link" onClick={() => void signOut()}>Log out</button>
        </span>
      </header>
      <main>{children}</main>
    </div>
  );
}
