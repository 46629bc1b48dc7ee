/**
 * What the agent remembers between its runs about the restore jobs it
 * started: each target a restore job began to write and did not finish
 * (killed, stopped, or ended with paths not restored), with its snapshot. A
 * later restore job of the same snapshot into the same target continues
 * there, although the target now holds files (those the interrupted job
 * wrote under their final names), where any other restore into a folder
 * that holds files is refused. A JSON file beside the agent's configuration,
 * 0600: `{"TARGET": "SNAPSHOT-ID", …}`; a target is dropped once a restore
 * into it succeeds.
 */
import { readFile } from 'node:fs/promises';
import { writePrivateFile } from './agent-config.js';

/** The unfinished restores of one agent, kept in the file at `path`. */
export class UnfinishedRestores {
  constructor(private readonly path: string) {}

  /** The snapshot an unfinished restore into `target` was restoring, if there is one. */
  async of(target: string): Promise<string | undefined> {
    return (await this.read())[target];
  }

  /** Records that a restore of `snapshotId` into `target` begins (before it writes anything). */
  async begin(target: string, snapshotId: string): Promise<void> {
    await this.write({ ...await this.read(), [target]: snapshotId });
  }

  /** Forgets `target`: its restore finished. */
  async finish(target: string): Promise<void> {
    const all = await this.read();
    if (!(target in all)) return;
    delete all[target];
    await this.write(all);
  }

  private async read(): Promise<Record<string, string>> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw e;
    }
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string')) {
      throw new Error(`${this.path} is not the agent's record of unfinished restores (an object of targets and snapshot ids)`);
    }
    return parsed as Record<string, string>;
  }

  private write(all: Record<string, string>): Promise<void> {
    return writePrivateFile(this.path, `${JSON.stringify(all, null, 2)}\n`);
  }
}
