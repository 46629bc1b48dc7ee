/**
 * The logged-in person: the session token from POST /login, kept in
 * sessionStorage (this tab only, gone when it closes; never a cookie, so
 * no other site can make the browser use it), the user it belongs to, and
 * the API client that sends it. A 401 from any call ends the session.
 */
import { createContext, useContext, useMemo, useState, type ReactNode } from 'react';
import type { UserBody } from '../../src/api/v1.js';
import { ApiClient } from './api/client.js';

const KEY = 'holdfast.session';

interface Stored { token: string; user: UserBody }

function load(): Stored | null {
  try {
    const s = sessionStorage.getItem(KEY);
    return s ? (JSON.parse(s) as Stored) : null;
  } catch {
    return null;
  }
}

/** The session token of this tab, for requests the API client does not make (the snapshot browser's reads of /safes). */
export function sessionToken(): string | null {
  return load()?.token ?? null;
}

export interface Session {
  /** The person, or null when logged out. */
  readonly user: UserBody | null;
  readonly api: ApiClient;
  /** Why the last session ended, when the server ended it (shown on the login page). */
  readonly endedBecause: string | null;
  signedIn(token: string, user: UserBody): void;
  /** Updates the person (after a password change). */
  setUser(user: UserBody): void;
  signOut(): Promise<void>;
}

const SessionContext = createContext<Session | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [stored, setStored] = useState<Stored | null>(load);
  const [endedBecause, setEndedBecause] = useState<string | null>(null);
  const session = useMemo<Session>(() => {
    const save = (s: Stored | null): void => {
      if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
      else sessionStorage.removeItem(KEY);
      setStored(s);
    };
    const api = new ApiClient({
      token: () => load()?.token ?? null,
      expired: () => {
        save(null);
        setEndedBecause('Your session ended (it expired or was revoked): log in again.');
      },
    });
    return {
      user: stored?.user ?? null, api, endedBecause,
      signedIn: (token, user) => {
        setEndedBecause(null);
        save({ token, user });
      },
      setUser: (user) => { const s = load(); if (s) save({ ...s, user }); },
      signOut: async () => {
        await api.logout().catch(() => undefined);
        save(null);
      },
    };
  }, [stored, endedBecause]);
  return <SessionContext.Provider value={session}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside SessionProvider');
  return s;
}

/** The logged-in person (only inside the pages behind login). */
export function useUser(): UserBody {
  const { user } = useSession();
  if (!user) throw new Error('useUser without a session');
  return user;
}

export const isProviderRole = (u: UserBody): boolean => u.role === 'provider-admin' || u.role === 'provider-operator';
/** May change things (the server refuses customer-viewer every change). */
export const mayManage = (u: UserBody): boolean => u.role !== 'customer-viewer';
