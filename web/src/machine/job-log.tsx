/**
 * One job and its log: its events (GET /jobs/ID/events), followed live
 * while it is queued or running (the next events after the last one seen,
 * every second) until it ends; its result and error once it has.
 */
import { useEffect, useState } from 'react';
import { FINAL_JOB_STATES, type JobBody, type JobEventBody } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { JobStateBadge } from '../components/status-badge.js';
import { formatTime } from '../format.js';
import { mayManage, useSession, useUser } from '../session.js';

const POLL_MS = 1000;

export function JobLog({ jobId, onChange }: { jobId: string; onChange?: (job: JobBody) => void }) {
  const { api } = useSession();
  const user = useUser();
  const [job, setJob] = useState<JobBody | null>(null);
  const [events, setEvents] = useState<JobEventBody[]>([]);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let stopped = false;
    let after: number | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setJob(null);
    setEvents([]);
    const tick = async (): Promise<void> => {
      try {
        const [j, more] = await Promise.all([api.job(jobId), api.jobEvents(jobId, after)]);
        if (stopped) return;
        setError(null);
        if (more.length > 0) {
          after = more[more.length - 1]!.seq;
          setEvents((e) => [...e, ...more]);
        }
        setJob(j);
        onChange?.(j);
        // Once the job ended, one more read takes the events it reported last; then the log is complete.
        if (FINAL_JOB_STATES.includes(j.state) && more.length === 0) return;
      } catch (e) {
        if (stopped) return;
        setError(describeError(e));
      }
      timer = setTimeout(() => void tick(), POLL_MS);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
    // onChange is the caller's notification, not a reason to read the job again.
  }, [api, jobId]);

  const cancel = async (): Promise<void> => {
    try {
      setJob(await api.cancelJob(jobId));
    } catch (e) {
      setError(describeError(e));
    }
  };
  const live = job !== null && !FINAL_JOB_STATES.includes(job.state);
  const progress = [...events].reverse().find((e) => e.kind === 'progress');
  return (
    <div className="card job-log" aria-label="job log">
      <div className="page-head">
        <h3>{job ? `${job.kind} job` : 'Job'} <code>{jobId.slice(0, 8)}</code> {job ? <JobStateBadge state={job.state} /> : null}</h3>
        {live && mayManage(user) && !job?.cancelled_by ? <button type="button" className="secondary" onClick={() => void cancel()}>Cancel</button> : null}
      </div>
      <ErrorBox error={error} />
      {job ? (
        <dl className="facts">
          <dt>Started by</dt><dd>{job.created_by}</dd>
          <dt>Queued</dt><dd>{formatTime(job.created_at)}</dd>
          <dt>Started</dt><dd>{formatTime(job.started_at)}</dd>
          <dt>Ended</dt><dd>{formatTime(job.finished_at)}</dd>
        </dl>
      ) : null}
      {live && progress ? <p className="progress" role="status">{progress.message}</p> : null}
      {job?.error ? <p className="error" role="alert">{job.error}</p> : null}
      <pre className="log" aria-label="log">{events.filter((e) => e.kind === 'log').map((e) => `${new Date(e.at).toLocaleTimeString()}  ${e.message}`).join('\n') || (live ? 'waiting for the agent…' : 'no log lines')}</pre>
      {job?.result ? <details><summary>Result</summary><pre>{JSON.stringify(job.result, null, 2)}</pre></details> : null}
    </div>
  );
}
