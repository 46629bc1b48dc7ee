/** Changing one's password; on a first login (a one-time password) nothing else is open until it is done. */
import { useState, type FormEvent } from 'react';
import { describeError } from '../api/client.js';
import { useSession } from '../session.js';

export function ChangePasswordPage({ firstLogin = false }: { firstLogin?: boolean }) {
  const { api, user, setUser, signOut } = useSession();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [again, setAgain] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    if (next !== again) return setError('The two new passwords differ.');
    if (next.length < 12) return setError('The new password needs at least 12 characters.');
    try {
      await api.changePassword({ current_password: current, new_password: next });
      if (user) setUser({ ...user, must_change_password: false });
      setDone(true);
    } catch (err) {
      setError(describeError(err));
    }
  };
  const form = (
    <form className="card" onSubmit={(e) => void submit(e)}>
      <h1>{firstLogin ? 'Choose your password' : 'Change your password'}</h1>
      {firstLogin ? <p>You logged in with a one-time password: choose your own (at least 12 characters) to go on.</p> : null}
      <label>Current password<input name="current" type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} required /></label>
      <label>New password<input name="new" type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} required /></label>
      <label>New password again<input name="again" type="password" autoComplete="new-password" value={again} onChange={(e) => setAgain(e.target.value)} required /></label>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {done ? <p className="notice">Your password is changed; your other sessions ended.</p> : null}
      <div className="actions">
        <button type="submit">Change password</button>
        {firstLogin ? <button type="button" className="link" onClick={() => void signOut()}>Log out</button> : null}
      </div>
    </form>
  );
  return firstLogin ? <div className="login">{form}</div> : <section className="page">{form}</section>;
}
