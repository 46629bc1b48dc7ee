/**
 * The server's TLS certificate: on first start a self-signed one (ECDSA
 * P-256, ten years, for localhost, 127.0.0.1 and the host's name), kept in
 * DATA/tls with its key readable by the owner only; later starts reuse it.
 * Clients pin its fingerprint, `SHA256:` followed by the lower-case hex
 * SHA-256 of the certificate's DER bytes, colon-separated (what
 * `holdfast server` and `holdfast server info` print, and what
 * `--fingerprint` takes).
 */
import { X509Certificate as NodeX509 } from 'node:crypto';
import { webcrypto } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** A certificate and its key, PEM, and the fingerprint clients pin. */
export interface ServerCertificate {
  readonly cert: string;
  readonly key: string;
  readonly fingerprint: string;
  /** Whether this start made it. */
  readonly created: boolean;
}

/** `SHA256:ab:cd:…` of a PEM certificate. */
export function fingerprintOf(certPem: string): string {
  return `SHA256:${new NodeX509(certPem).fingerprint256.toLowerCase()}`;
}

const pem = (label: string, der: ArrayBuffer): string => `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END ${label}-----\n`;

async function makeCertificate(names: readonly string[]): Promise<{ cert: string; key: string }> {
  // @peculiar/x509 needs the Reflect metadata API installed first (its README); both are loaded only when a certificate is made.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  const crypto = webcrypto as unknown as Crypto;
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '7'),
    name: `CN=holdfast server ${names[2] ?? names[0]}`,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 10 * 365 * 86400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((n) => (/^[\d.]+$|:/.test(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }))),
    ],
  }, crypto);
  const key = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { cert: pem('CERTIFICATE', cert.rawData), key: pem('PRIVATE KEY', key) };
}

/** The certificate in `dir` (DATA/tls), made first if there is none. */
export async function ensureCertificate(dir: string): Promise<ServerCertificate> {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  try {
    const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    return { cert, key, fingerprint: fingerprintOf(cert), created: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const names = [...new Set(['localhost', '127.0.0.1', hostname()])];
  const { cert, key } = await makeCertificate(names);
  // The key first, then the certificate, each renamed into place: a start cut short leaves no certificate without its key.
  await writeFile(`${keyFile}.tmp`, key, { mode: 0o600 });
  await rename(`${keyFile}.tmp`, keyFile);
  await writeFile(`${certFile}.tmp`, cert, { mode: 0o644 });
  await rename(`${certFile}.tmp`, certFile);
  return { cert, key, fingerprint: fingerprintOf(cert), created: true };
}
