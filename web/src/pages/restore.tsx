/**
 * The restore wizard for one machine: files or folders of a snapshot back
 * to the machine through its agent (to where they were, or into another
 * folder), followed until the job ends; or a whole disk image onto a disk
 * of a machine booted from rescue media: a restore token for the disk
 * safe, and the one command to run there.
 */
import { useState, type FormEvent } from 'react';
import { Link, useParams } from 'react-router';
import type { CreatedTokenBody, SafeBody } from '../../../src/api/v1.js';
import { ApiRequestError, describeError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { UNAUTHENTIC_WHY } from '../components/unauthentic-mark.js';
import { Command, FingerprintField, fingerprintArg, useFingerprint } from '../components/fingerprint.js';
import { formatBytes, formatTime } from '../format.js';
import { defaultRestoreSource, snapshotPoints, type SnapshotPoint } from '../lib/snapshots.js';
import { useLoad } from '../load.js';
import { parsePaths } from '../machine/backup-now.js';
import { JobLog } from '../machine/job-log.js';
import { useSession } from '../session.js';
import { NotFound } from './not-found.js';

type What = 'files' | 'image';

export function RestorePage() {
  const { id = '' } = useParams();
  const { api } = useSession();
  const page = useLoad(async () => {
    const machine = await api.machine(id);
    const [safes, snapshots] = await Promise.all([api.safes(), api.machineSnapshots(id)]);
    return { machine, safe: safes.find((s) => s.machine_id === id), snapshots: snapshotPoints(snapshots).reverse() };
  }, [api, id]);
  const [what, setWhat] = useState<What>('files');
  if (page.failure instanceof ApiRequestError && page.failure.status === 404) return <NotFound />;
  if (!page.data) return <section className="page"><h1>Restore</h1><ErrorBox error={page.error} retry={page.reload} /></section>;
  const { machine, safe, snapshots } = page.data;
  return (
    <section className="page">
      <h1>Restore from <Link to={`/machines/${machine.id}`}>{machine.name}</Link></h1>
      {!safe ? <p className="error">This machine has no disk safe: there is nothing to restore.</p> : (
        <>
          <div className="steps" role="radiogroup" aria-label="what to restore">
            <label className={`choice ${what === 'files' ? 'selected' : ''}`}>
              <input type="radio" name="what" checked={what === 'files'} onChange={() => setWhat('files')} />
              <strong>Files or folders</strong><span>back to this machine, through its agent</span>
            </label>
            <label className={`choice ${what === 'image' ? 'selected' : ''}`}>
              <input type="radio" name="what" checked={what === 'image'} onChange={() => setWhat('image')} />
              <strong>A disk image</strong><span>onto a disk of a machine started from rescue media</span>
            </label>
          </div>
          {what === 'files' ? <FilesRestore machineId={machine.id} snapshots={snapshots.filter((s) => !s.image)} /> : <ImageRestore safe={safe} images={snapshots.filter((s) => s.image)} />}
        </>
      )}
    </section>
  );
}

/** A warning while the snapshot chosen is one the server flags unauthentic. */
function UnauthenticWarning({ chosen, snapshots }: { chosen: string; snapshots: SnapshotPoint[] }) {
  if (!snapshots.some((s) => s.id === chosen && s.unauthentic)) return null;
  return <p className="error" role="alert">Snapshot {chosen.slice(0, 8)} is unauthentic. {UNAUTHENTIC_WHY}</p>;
}

function FilesRestore({ machineId, snapshots }: { machineId: string; snapshots: SnapshotPoint[] }) {
  const { api } = useSession();
  const [snapshot, setSnapshot] = useState(defaultRestoreSource(snapshots));
  const [paths, setPaths] = useState('');
  const [where, setWhere] = useState<'original' | 'other'>('other');
  const [target, setTarget] = useState('/var/tmp/restored');
  const [error, setError] = useState<string | null>(null);
  const [job, setJob] = useState<string | null>(null);
  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    try {
      const chosen = paths.trim() ? parsePaths(paths) : undefined;
      const dir = where === 'original' ? '/' : target.trim();
      if (!dir.startsWith('/')) throw new Error(`"${dir}" is not an absolute path (it must start with /).`);
      const j = await api.createJob(machineId, { kind: 'restore', spec: { snapshot, target: dir, ...(chosen ? { paths: chosen } : {}) } });
      setJob(j.id);
    } catch (err) {
      setError(err instanceof ApiRequestError ? describeError(err) : (err as Error).message);
    }
  };
  return (
    <>
      <form className="card" onSubmit={(e) => void submit(e)}>
        <label>Snapshot
          <select name="snapshot" value={snapshot} onChange={(e) => setSnapshot(e.target.value)}>
            <option value="latest">the latest</option>
            {snapshots.map((s) => <option key={s.id} value={s.id} title={s.unauthentic ? UNAUTHENTIC_WHY : undefined}>{s.unauthentic ? '⚠ UNAUTHENTIC · ' : ''}{s.id.slice(0, 8)} · {formatTime(s.time)} · {s.paths.join(', ')} · {formatBytes(s.size)}</option>)}
          </select>
        </label>
        <UnauthenticWarning chosen={snapshot} snapshots={snapshots} />
        <label>Files or folders to restore, one a line (none: everything)<textarea name="paths" rows={3} placeholder="/etc/nginx" value={paths} onChange={(e) => setPaths(e.target.value)} /></label>
        <fieldset className="where">
          <legend>Where to</legend>
          <label className="inline"><input type="radio" name="where" checked={where === 'original'} onChange={() => setWhere('original')} /> where they were (the agent refuses to overwrite files unless its configuration allows it)</label>
          <label className="inline"><input type="radio" name="where" checked={where === 'other'} onChange={() => setWhere('other')} /> into another folder:</label>
          <input name="target" aria-label="target folder" value={target} disabled={where !== 'other'} onChange={(e) => setTarget(e.target.value)} />
        </fieldset>
        {error ? <p className="error" role="alert">{error}</p> : null}
        <div className="actions"><button type="submit">Restore</button></div>
      </form>
      {job ? <JobLog jobId={job} /> : null}
    </>
  );
}

function ImageRestore({ safe, images }: { safe: SafeBody; images: SnapshotPoint[] }) {
  const { api } = useSession();
  const [snapshot, setSnapshot] = useState(defaultRestoreSource(images));
  const [device, setDevice] = useState('/dev/sda');
  const [hours, setHours] = useState('4');
  const [fingerprint, setFingerprint] = useFingerprint();
  const [token, setToken] = useState<CreatedTokenBody | null>(null);
  const [error, setError] = useState<string | null>(null);
  const make = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    const h = Number(hours);
    if (!(h >= 1 && h <= 168)) return setError('The token lives between 1 and 168 hours (7 days).');
    try {
      setToken(await api.createRestoreToken(safe.id, { name: `rescue restore of ${safe.name}`, expires_in: Math.round(h * 3600) }));
    } catch (err) {
      setError(describeError(err));
    }
  };
  const command = `HOLDFAST_TOKEN=${token?.secret ?? 'hft_…'} holdfast restore-image -r ${location.origin}/safes/${safe.name} ${fingerprintArg(fingerprint)} --password-file ${safe.name}.password ${snapshot.slice(0, 8)} --to ${device}`;
  return (
    <form className="card" onSubmit={(e) => void make(e)}>
      <label>Image snapshot
        <select name="snapshot" value={snapshot} onChange={(e) => setSnapshot(e.target.value)}>
          <option value="latest">the latest</option>
          {images.map((s) => <option key={s.id} value={s.id} title={s.unauthentic ? UNAUTHENTIC_WHY : undefined}>{s.unauthentic ? '⚠ UNAUTHENTIC · ' : ''}{s.id.slice(0, 8)} · {formatTime(s.time)} · {formatBytes(s.size)}</option>)}
        </select>
      </label>
      <UnauthenticWarning chosen={snapshot} snapshots={images} />
      <label>The disk to write on the rescued machine (or a file)<input name="device" value={device} onChange={(e) => setDevice(e.target.value)} /></label>
      <label>The restore token lives (hours)<input name="hours" inputMode="numeric" value={hours} onChange={(e) => setHours(e.target.value)} /></label>
      <FingerprintField value={fingerprint} onChange={setFingerprint} />
      {error ? <p className="error" role="alert">{error}</p> : null}
      {!token ? <div className="actions"><button type="submit">Make a restore token</button></div> : (
        <>
          <p className="notice">The token reads the disk safe <code>{safe.name}</code> and nothing else, until {formatTime(token.token.expires_at)}. Its secret is shown this once. Run on the rescue system, with the disk safe's password in <code>{safe.name}.password</code> (the machine's agent configuration holds it, or recover it from its escrow with <code>holdfast escrow recover</code>):</p>
          <Command label="restore command" text={command} />
        </>
      )}
    </form>
  );
}
