/**
 * The server's certificate fingerprint, for the commands the pages show
 * (enrolment, a restore from rescue media). A browser cannot read the
 * certificate it was shown: the node says its own (GET /api/v1/server).
 * A node behind a proxy that holds the certificate has none to say: the
 * person pastes the proxy's (`holdfast server info` prints a node's) and
 * this browser keeps it.
 */
import { useEffect, useState } from 'react';
import { useSession } from '../session.js';

const KEY = 'holdfast.fingerprint';
const PATTERN = /^SHA256:[0-9a-fA-F:]{64,95}$/;

export function useFingerprint(): [string, (v: string) => void] {
  const { api } = useSession();
  const [value, setValue] = useState(() => localStorage.getItem(KEY) ?? '');
  useEffect(() => {
    let live = true;
    api.serverInfo().then((s) => { if (live && s.fingerprint !== null) setValue(s.fingerprint); }, () => undefined);
    return () => { live = false; };
  }, [api]);
  return [value, (v: string) => {
    setValue(v);
    if (PATTERN.test(v.trim())) localStorage.setItem(KEY, v.trim());
  }];
}

/** `--fingerprint …` for a command: the one given, or a placeholder that says what goes there. */
export const fingerprintArg = (fp: string): string => `--fingerprint ${PATTERN.test(fp.trim()) ? fp.trim() : 'SHA256:…'}`;

export function FingerprintField({ value, onChange }: { value: string; onChange: (v: string) => void }) {
  const bad = value.trim() !== '' && !PATTERN.test(value.trim());
  return (
    <label>
      <span>The server's certificate fingerprint (printed by <code>holdfast server info</code>; needed for a self-signed certificate)</span>
      <input name="fingerprint" placeholder="SHA256:…" value={value} onChange={(e) => onChange(e.target.value)} />
      {bad ? <span className="error">This is not a fingerprint: it reads SHA256: and 64 hex digits.</span> : null}
    </label>
  );
}

/** A command to copy, with a button that copies it. */
export function Command({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="command">
      <pre aria-label={label}>{text}</pre>
      <button type="button" className="secondary" onClick={() => void navigator.clipboard?.writeText(text).then(() => setCopied(true), () => undefined)}>{copied ? 'Copied' : 'Copy'}</button>
    </div>
  );
}
