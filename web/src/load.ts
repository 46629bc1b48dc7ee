/** Loading data for a page: the value, the error in words, and a reload; a newer load wins over an older one. */
import { useCallback, useEffect, useRef, useState } from 'react';
import { describeError } from './api/client.js';

export interface Loaded<T> {
  readonly data: T | undefined;
  /** What went wrong, in words, or null. */
  readonly error: string | null;
  readonly loading: boolean;
  /** The error as thrown (to tell a 404 from others). */
  readonly failure: unknown;
  reload(): void;
}

export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; failure: unknown; loading: boolean }>({ data: undefined, failure: null, loading: true });
  const seq = useRef(0);
  const run = useCallback(fn, deps);
  const reload = useCallback(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    run().then(
      (data) => { if (seq.current === mine) setState({ data, failure: null, loading: false }); },
      (failure: unknown) => { if (seq.current === mine) setState((s) => ({ data: s.data, failure, loading: false })); },
    );
  }, [run]);
  useEffect(() => {
    reload();
    return () => { seq.current++; };
  }, [reload]);
  return { ...state, error: state.failure ? describeError(state.failure) : null, reload };
}
