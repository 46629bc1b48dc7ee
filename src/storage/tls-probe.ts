/**
 * Whether an endpoint speaks TLS: a plain-HTTP request to a TLS port gets no
 * answer a client can tell from a dropped connection (the server resets it,
 * or answers with a TLS alert), so a client that met such a failure before
 * the endpoint ever answered asks the port directly with a TLS handshake.
 */
import { isIP } from 'node:net';
import { connect } from 'node:tls';

/** How long the handshake may take before the answer is "no". */
const PROBE_TIMEOUT_MS = 5_000;

/**
 * True when a TLS handshake with `host:port` completes (the certificate is
 * not checked: the question is only what the port speaks), false when it
 * fails or times out. Never throws.
 */
export function speaksTls(host: string, port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, rejectUnauthorized: false, ...(isIP(host) === 0 ? { servername: host } : {}) });
    const done = (answer: boolean): void => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
  });
}
