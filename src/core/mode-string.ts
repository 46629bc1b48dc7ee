/** The `ls -l` form of a file type and mode ("drwxr-sr-x", "-rwsr-xr-x"). No I/O. */

export type FileKind = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';

const TYPE_CHAR: Record<FileKind, string> = { file: '-', dir: 'd', symlink: 'l', fifo: 'p', chardev: 'c', blockdev: 'b', socket: 's' };

/** "drwxr-xr-x" with setuid/setgid/sticky, as `ls -l` prints it. */
export function modeString(n: { readonly type: FileKind; readonly mode: number }): string {
  const m = n.mode;
  const rwx = (shift: number, special: boolean, ch: string): string => {
    const r = m & (4 << shift) ? 'r' : '-';
    const w = m & (2 << shift) ? 'w' : '-';
    const x = m & (1 << shift);
    const xc = special ? (x ? ch : ch.toUpperCase()) : x ? 'x' : '-';
    return r + w + xc;
  };
  return TYPE_CHAR[n.type] + rwx(6, (m & 0o4000) !== 0, 's') + rwx(3, (m & 0o2000) !== 0, 's') + rwx(0, (m & 0o1000) !== 0, 't');
}
