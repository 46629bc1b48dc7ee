#!/usr/bin/env node
/**
 * The `holdfast` command line. This module starts the key derivation the
 * command will need (early-key.ts), then loads the rest (program.ts) while
 * the derivation runs on the thread pool.
 */
import { startKeyDerivation } from './early-key.js';

const derivation = startKeyDerivation(process.argv);
const { run } = await import('./program.js');
process.exitCode = await run(process.argv, await derivation);
