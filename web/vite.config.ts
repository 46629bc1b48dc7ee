/**
 * The web interface's build: web/ → dist/web (beside the compiled server,
 * which serves it at `/`, src/server/http/web-app.ts). No inline scripts or
 * styles (the server's Content-Security-Policy allows none).
 */
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1024,
  },
});
