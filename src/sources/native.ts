/**
 * The holdfast_native addon (binding.gyp, native/): the system calls Node
 * offers not at all with Buffer paths (the xattr family) or only one entry
 * per call (a folder's names and their lstat). `npm ci` builds it with
 * node-gyp into build/Release.
 */

import { createRequire } from 'node:module';

/** The functions the addon exports (native/*.cc); each part adds its own. */
export type NativeAddon = Record<string, never>;

const require = createRequire(import.meta.url);

/** The loaded addon; dist/src/sources/native.js sits three folders below the package root. */
export const native = require('../../../build/Release/holdfast_native.node') as NativeAddon;
