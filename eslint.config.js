import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The folders of src/, bottom-up: a folder imports only from the folders
 * listed before it (STYLE.md, "Layers you can see in the folder tree"). A
 * lower layer that needs something from a higher one declares the small
 * interface it needs, or the shared part moves down. A new top-level folder
 * is one more line here.
 */
export const LAYERS = [
  'core', // chunkers, ids, crypto, compression: no I/O
  'storage', // the Backend interface, its implementations and wrappers
  'repo', // the repository format: packs, indexes, trees, snapshots, keys, locks
  'sources', // file trees, block devices and images
  'jobs', // backup, restore, check, prune, … shared by every front end
  'api', // request and response schemas shared by the server, the agent and the web interface
  'server-nbd', // the NBD server
  'server', // the backup server: http/ (one file per resource), services/, db/
  'agent', // the daemon on each protected machine: connection, job runner, local config
  'cli', // one file per command
];

/**
 * One `no-restricted-imports` block per layer, refusing a relative import
 * that climbs out of its folder (`../`) into a layer above it. A sub-folder
 * named like a higher layer would be refused too; none is.
 */
const layering = LAYERS.slice(0, -1).map((layer, i) => ({
  files: [`src/${layer}/**/*.ts`],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: [{
        regex: `^(\\./)?(\\.\\./)+(${LAYERS.slice(i + 1).join('|')})(/|$)`,
        message: `src/${layer} may import only from ${['node modules', ...LAYERS.slice(0, i).map((l) => `src/${l}`)].join(', ')}: imports go down (eslint.config.js LAYERS). Move what both need down, or declare the interface src/${layer} needs.`,
      }],
    }],
  },
}));

/** The web interface (web/) reaches the server through the API only: of src/ it imports src/api alone. */
const webImports = {
  files: ['web/**/*.ts', 'web/**/*.tsx'],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: [{ regex: '^(\\.\\./)+src/(?!api/)', message: 'web/ may import only src/api of the server\'s code: the app speaks to the server through the API.' }],
    }],
  },
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'build/', '.bench/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...layering,
  webImports,
);
