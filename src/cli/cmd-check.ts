/**
 * `holdfast check [--read-data | --read-data-subset n/t|x%|SIZE]`: verifies
 * the repository and reports damage as what it affects (snapshots, and with
 * the password, files). Without a password it checks stored-bytes
 * checksums and references only (src/jobs/check/checker.ts).
 */
import type { Command } from 'commander';
import { Checker, type CheckReport } from '../jobs/check/checker.js';
import { parseSubset, type DataSelection } from '../jobs/check/subset.js';
import { plural, formatBytes, globals, say, warn, type GlobalOptions } from './context.js';
import { printJson } from './json-output.js';
import { localIso } from '../core/local-time.js';
import { ExitError, EXIT } from './exit-codes.js';
import { holdLock, openMaintenance } from './maintenance.js';
import { printable } from './printable.js';

interface CheckFlags {
  readData?: boolean;
  readDataSubset?: string;
}

/** --read-data / --read-data-subset as a selection (shared with `repair snapshots`). */
export function dataSelection(f: CheckFlags): DataSelection | undefined {
  if (f.readData && f.readDataSubset) throw new ExitError('give --read-data or --read-data-subset, not both', EXIT.usage);
  if (f.readData) return { kind: 'all' };
  if (f.readDataSubset === undefined) return undefined;
  try {
    return parseSubset(f.readDataSubset);
  } catch (e) {
    throw new ExitError((e as Error).message, EXIT.usage);
  }
}

const SHOW = 20;

export function register(program: Command): void {
  program
    .command('check')
    .description('verify the repository; with a password also trees and blob contents, without one stored-bytes checksums and references')
    .option('--read-data', 'read every pack and verify every blob')
    .option('--read-data-subset <subset>', 'read part of the packs: n/t (bucket n of t: run 1/t … t/t to cover all), x% (random), or SIZE (random, e.g. 500M)')
    .action(async (f: CheckFlags, cmd: Command) => {
      const g = globals(cmd);
      const readData = dataSelection(f);
      const { plain, keyed, stop } = await openMaintenance(g, true);
      if (!keyed && !g.json) say(g, 'no password given: checking stored bytes and references only (trees, file names and blob contents need the password)');
      const held = await holdLock(plain, 'check', { stop });
      let report: CheckReport;
      try {
        report = await new Checker(plain, { ...(readData ? { readData } : {}), ...(keyed ? { keyed } : {}), signal: held.signal }).run();
      } catch (e) {
        throw held.signal.aborted ? held.signal.reason : e;
      } finally {
        await held.release();
      }
      print(g, report, readData);
      if (report.errors.length > 0) process.exitCode = EXIT.failed;
    });
}

/** Prints a check report (text or JSON); shared with `repair snapshots`. `readData`: the packs asked to be read. */
export function print(g: GlobalOptions, r: CheckReport, readData?: DataSelection): void {
  if (g.json) {
    printJson(r);
    return;
  }
  // A subset that selected nothing is said, or the line reads as a check that read nothing by design.
  const read = r.packsRead > 0 ? `; read ${plural(r.packsRead, 'pack')} (${formatBytes(r.bytesRead)})`
    : readData === undefined ? '' : `; read 0 packs (${readData.kind === 'bucket' ? `group ${readData.n} of ${readData.of} is empty` : 'none was selected'})`;
  say(g, `checked ${plural(r.snapshots, 'snapshot')}, ${plural(r.indexFiles, 'index file')}, ${plural(r.packs, 'pack')}${read}${r.keyed ? '' : ' (without the key)'}`);
  for (const w of r.warnings.slice(0, SHOW)) warn(`${w.object}: ${w.message}`);
  if (r.warnings.length > SHOW) warn(`… and ${r.warnings.length - SHOW} more warnings`);
  for (const e of r.errors.slice(0, SHOW)) process.stderr.write(`error: ${printable(`${e.object}: ${e.message}`)}\n`);
  if (r.errors.length > SHOW) process.stderr.write(`error: … and ${r.errors.length - SHOW} more errors\n`);
  if (r.damaged.length > 0) {
    say(g, `damage affects ${r.damaged.length} snapshot(s):`);
    for (const d of r.damaged) {
      say(g, `  snapshot ${d.id.slice(0, 8)} of ${d.paths.join(' ')} at ${localIso(d.time)} (${d.hostname}): ${d.blobs} ${d.certain ? 'lost' : 'possibly damaged'} blob(s)`);
      if (d.rootLost) say(g, '    the whole snapshot: its root listing is lost');
      for (const p of d.dirs ?? []) say(g, `    folder ${p}: listing lost, nothing below it can be restored`);
      for (const p of d.files ?? []) say(g, `    file ${p}`);
      if (d.imageBlocks) say(g, `    ${d.imageBlocks} image block(s)`);
    }
    if (!r.keyed) say(g, '  (give the password to see which files)');
    say(g, 'files not listed restore normally; "holdfast repair snapshots --mark-damaged" or "--forget-damaged" deals with the rest');
  }
  if (r.incomplete.length > 0) {
    const ids = r.incomplete.slice(0, SHOW).map((id) => id.slice(0, 8)).join(' ');
    say(g, `${r.incomplete.length} snapshot(s) are incomplete (files unreadable at backup time, or marked damaged by repair; their restores report those files): ${ids}${r.incomplete.length > SHOW ? ' …' : ''}`);
  }
  say(g, r.errors.length === 0 ? 'no errors were found' : `${r.errors.length} error(s) found`);
}
