/**
 * The mark of a snapshot the server flags `unauthentic` (src/api/v1.ts):
 * the machine's agent found it failing its MAC, so someone without the key
 * planted it. Shown wherever a snapshot is listed or chosen, with why.
 */

/** Why the snapshot is marked, for a title (tooltip) and a warning. */
export const UNAUTHENTIC_WHY = 'The machine\'s agent found this snapshot failing its MAC: someone without the disk safe\'s key planted it in storage. Its contents are not what was backed up; do not restore from it. The server\'s retention never counts it.';

export function UnauthenticMark() {
  return <span className="badge failed" title={UNAUTHENTIC_WHY}>unauthentic</span>;
}
