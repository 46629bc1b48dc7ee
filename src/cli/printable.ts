/**
 * Text the CLI prints for a terminal, made harmless. Strings taken from a
 * repository (host names, tags, paths, user names, reasons, messages that
 * quote them) are chosen by whoever wrote it, which may be a client holding
 * only the key or, for lock files and packs, anyone who can write to the
 * storage: an ESC sequence printed raw can recolour, move the cursor, retitle
 * the window or hide lines. Every control character is shown as an escape
 * instead (`\x1b`, `\n`, `\u009b`), so what is printed is one line of visible
 * characters. --json output is never passed through here: JSON escapes
 * control characters itself, and its strings must stay exact.
 *
 * No backslash is added where there was no control character, so escaping
 * twice changes nothing: the printing functions (`say`, `warn`, main's error
 * line) escape whatever they are given, and a caller may escape a field first.
 */

/**
 * C0 controls, DEL and C1 controls (0x9b is a one-byte CSI on some
 * terminals); the Unicode line and paragraph separators, which some
 * terminals and log viewers break lines at; and the bidirectional marks,
 * embeddings, overrides and isolates, which reorder what follows them on the
 * line (a name can make the text after it read backwards: "Trojan Source").
 */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f)
    || code === 0x061c || code === 0x200e || code === 0x200f
    || (code >= 0x2028 && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
}

const NAMED: Record<number, string> = { 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };

/** `text` with every control character (newlines too) written as an escape. */
export function printable(text: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (!isControl(code)) continue;
    out += text.slice(from, i) + (NAMED[code] ?? (code < 0x80 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`));
    from = i + 1;
  }
  return from === 0 ? text : out + text.slice(from);
}

/** `text` of several lines, each made `printable`; the line breaks stay. */
export function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}

/**
 * An error message for the CLI's last line, made `printable` line by line:
 * a message may list things on lines of their own (a restore's failed
 * paths), but no line after the first begins at the margin, so text quoted
 * in a message cannot pass for a line of its own ("holdfast: …",
 * "warning: …").
 */
export function printableMessage(text: string): string {
  return printableLines(text).split('\n').map((line, i) => (i === 0 || line === '' || line.startsWith(' ') ? line : `  ${line}`)).join('\n');
}
