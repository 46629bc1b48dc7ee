#!/usr/bin/env node
/**
 * The `holdfast` command line. This module starts the key derivation the
 * command will need (early-key.ts), then loads the rest (program.ts) while
 * the derivation runs on the thread pool.
 *
 * V8 optimises a function once it has run a budget of bytecode; at four
 * times the default (67,584 bytes in Node 20's V8) a short command compiles
 * less of its start-up code with TurboFan, and long jobs still get their hot
 * loops optimised a moment later (docs/decisions.md, "Fixed costs per run").
 */
import { setFlagsFromString } from 'node:v8';
import { startKeyDerivation } from './early-key.js';

setFlagsFromString(`--interrupt-budget=${4 * 67_584}`);
const derivation = startKeyDerivation(process.argv);
const { run } = await import('./program.js');
process.exitCode = await run(process.argv, await derivation);
