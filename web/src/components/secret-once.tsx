/** A secret the server shows this once (a token's secret, a one-time password): shown with a way to copy it and a warning. */
import { Command } from './fingerprint.js';

export function SecretOnce({ what, secret, onDone }: { what: string; secret: string; onDone: () => void }) {
  return (
    <div className="card secret" role="region" aria-label="secret">
      <p className="notice">{what}: copy it now; it is shown this once and cannot be shown again.</p>
      <Command label="secret" text={secret} />
      <div className="actions"><button type="button" className="secondary" onClick={onDone}>I have copied it</button></div>
    </div>
  );
}
