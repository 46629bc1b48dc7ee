/**
 * The web interface's build: web/ → dist/app (beside the compiled server,
 * which serves it at `/`, src/server/http/web-app.ts). No inline scripts or
 * styles (the server's Content-Security-Policy allows none).
 */
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [react()],
  // The snapshot search's worker is an ES module (it imports the reader, whose zstd finds its WebAssembly by import.meta.url).
  worker: { format: 'es' },
  build: {
    // Not dist/web: the root build compiles web/src/zk there for the Node tests of the format reader.
    outDir: '../dist/app',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1024,
  },
});
