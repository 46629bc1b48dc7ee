/** The login page: a user's name and password (POST /api/v1/login). */
import { useState, type FormEvent } from 'react';
import { describeError } from '../api/client.js';
import { useSession } from '../session.js';

export function LoginPage() {
  const { api, signedIn, endedBecause } = useSession();
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const s = await api.login(name, password);
      signedIn(s.token, s.user);
    } catch (err) {
      setError(describeError(err));
      setBusy(false);
    }
  };
  return (
    <div className="login">
      <form className="card" onSubmit={(e) => void submit(e)}>
        <h1>holdfast</h1>
        {endedBecause && !error ? <p className="notice">{endedBecause}</p> : null}
        <label>Name<input name="name" autoComplete="username" value={name} onChange={(e) => setName(e.target.value)} required autoFocus /></label>
        <label>Password<input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
        {error ? <p className="error" role="alert">{error}</p> : null}
        <button type="submit" disabled={busy}>{busy ? 'Logging in…' : 'Log in'}</button>
      </form>
    </div>
  );
}
