/**
 * Lines of a listing (`ls`), handed to the output in batches of about 64 KiB
 * and waiting for each batch to be taken: a deep tree's listing is far
 * larger than memory, and a pipe's reader may be slow.
 */
const BATCH_BYTES = 1 << 16;

export class LineBatch {
  private lines: string[] = [];
  private bytes = 0;

  /** `write` is awaited before the next batch is gathered. */
  constructor(private readonly write: (text: string) => void | Promise<void>) {}

  /** Adds a line (with its newline). */
  async push(line: string): Promise<void> {
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= BATCH_BYTES) await this.flush();
  }

  /** Hands over what is gathered. */
  async flush(): Promise<void> {
    if (this.lines.length === 0) return;
    const text = this.lines.join('');
    this.lines = [];
    this.bytes = 0;
    await this.write(text);
  }
}
