/** "Back up now": a backup job of the given folders for the machine's agent (POST /machines/ID/jobs). */
import { useState, type FormEvent } from 'react';
import type { JobBody } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { useSession } from '../session.js';

/** The folders of a text area, one a line; throws an Error in words for one that is not absolute. */
export function parsePaths(text: string): string[] {
  const paths = text.split('\n').map((l) => l.trim()).filter(Boolean);
  if (paths.length === 0) throw new Error('Give at least one folder to back up.');
  const bad = paths.find((p) => !p.startsWith('/'));
  if (bad) throw new Error(`"${bad}" is not an absolute path (it must start with /).`);
  return paths;
}

export function BackupNow({ machineId, defaultPaths, onStarted }: { machineId: string; defaultPaths: string[]; onStarted: (job: JobBody) => void }) {
  const { api } = useSession();
  const [paths, setPaths] = useState(defaultPaths.join('\n'));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      onStarted(await api.createJob(machineId, { kind: 'backup', spec: { paths: parsePaths(paths) } }));
    } catch (err) {
      setError(err instanceof Error && !('status' in err) ? err.message : describeError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="card backup-now" onSubmit={(e) => void submit(e)}>
      <label>Folders to back up (one a line)<textarea name="paths" rows={Math.max(2, paths.split('\n').length)} value={paths} onChange={(e) => setPaths(e.target.value)} /></label>
      {error ? <p className="error" role="alert">{error}</p> : null}
      <div className="actions"><button type="submit" disabled={busy}>{busy ? 'Starting…' : 'Back up now'}</button></div>
    </form>
  );
}
