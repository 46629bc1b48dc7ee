/**
 * The project's native addons (binding.gyp, native/), which `npm ci` builds
 * with node-gyp into build/Release: `holdfast_native` (system calls, the
 * per-thread AES-256-GCM and fingerprint contexts) and `holdfast_scrypt`
 * (libsodium's scrypt, a target of its own so that worker threads never load
 * libsodium). One loader for every layer that needs one: Node loads a file
 * once per thread, so all of a thread's callers share it.
 */
import { createRequire } from 'node:module';

export type AddonName = 'holdfast_native' | 'holdfast_scrypt';

const require = createRequire(import.meta.url);

/** The addon `name`, typed by the caller with the part of it the caller uses; dist/src/core sits three folders below the package root. */
export function loadAddon<T>(name: AddonName): T {
  return require(`../../../build/Release/${name}.node`) as T;
}
