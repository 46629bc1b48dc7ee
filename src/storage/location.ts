/**
 * A repository location's scheme: `s3:https://…`, `https://…`, `local:/path`,
 * `memory:`, or none for a plain path.
 */

/** The scheme in lower case (undefined for a plain path) and what follows its colon. */
export function splitLocation(location: string): { scheme: string | undefined; rest: string } {
  // Two letters or more, so that a Windows drive ("C:\backups") stays a path.
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(location)?.[1]?.toLowerCase();
  return { scheme, rest: scheme === undefined ? location : location.slice(scheme.length + 1) };
}

/** Whether the location is reached over the network (S3, a holdfast server), not a folder of this machine. */
export function isNetworkLocation(location: string): boolean {
  const { scheme } = splitLocation(location);
  return scheme === 's3' || scheme === 'https';
}
