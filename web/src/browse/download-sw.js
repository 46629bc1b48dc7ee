/* global self, URL, ReadableStream, Response */
/**
 * The snapshot browser's download service worker (plain JavaScript: Vite
 * copies it as it is). The page hands it a MessagePort for each download;
 * the browser's request for /assets/zk-download/ID is answered with a
 * ReadableStream that pulls the decrypted bytes from the page one part at
 * a time, so a download of any size never lies whole in memory.
 */
const waiting = new Map();

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('message', (e) => {
  if (e.data && e.data.type === 'download' && e.ports[0]) {
    waiting.set(e.data.id, { port: e.ports[0], name: e.data.name, size: e.data.size });
    e.ports[0].postMessage({ type: 'ready' });
  }
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  const m = url.pathname.match(/\/zk-download\/([0-9a-f]{32})$/);
  if (!m) return;
  const d = waiting.get(m[1]);
  if (!d) return;
  waiting.delete(m[1]);
  const stream = new ReadableStream({
    pull(controller) {
      return new Promise((resolve) => {
        d.port.onmessage = (msg) => {
          if (msg.data.type === 'chunk') controller.enqueue(new Uint8Array(msg.data.bytes));
          else if (msg.data.type === 'end') controller.close();
          else controller.error(new Error(msg.data.message));
          resolve();
        };
        d.port.postMessage({ type: 'pull' });
      });
    },
    cancel() {
      d.port.postMessage({ type: 'cancel' });
    },
  }, { highWaterMark: 1 });
  const headers = {
    'content-type': 'application/octet-stream',
    'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(d.name)}`,
    'x-content-type-options': 'nosniff',
  };
  if (typeof d.size === 'number') headers['content-length'] = String(d.size);
  e.respondWith(new Response(stream, { headers }));
});
