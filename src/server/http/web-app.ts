/**
 * The web interface at `/`: the files `vite build` wrote (web/, built into
 * dist/app by the package's build), and index.html for every other GET that
 * asks for a page, so that the app's own routes (/machines/ID, /storage, …)
 * load on a reload or a shared link. /api, /agent and /safes (the API, the
 * agents' channel and the repository protocol) never fall back: a path there
 * that matches no route answers a JSON 404 as before.
 *
 * Every answer of this plugin carries the headers a browser needs to keep the
 * app to itself: a Content-Security-Policy without inline scripts (the build
 * emits none), no framing, no MIME sniffing, no referrer. The app talks to
 * the API with a bearer session token it keeps in sessionStorage; the server
 * reads no cookie, so there is nothing for another site to forge.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';

/** Where the package's build puts the app (dist/app, beside dist/src). */
export const BUILT_WEB_ROOT = fileURLToPath(new URL('../../../app/', import.meta.url));

/** The snapshot browser's pages (/safes/ID/browse/…): the app's, under the repository protocol's prefix. */
const BROWSER_PAGES = /^\/safes\/[^/]+\/browse(\/|$)/;

/** The prefixes that belong to the server, never to the app (but BROWSER_PAGES). */
const SERVER_PREFIXES = ['/api/', '/agent/', '/safes/'];

/**
 * The app's policy: its own scripts, styles and fetches only;
 * WebAssembly may be compiled (the zero-knowledge browser's decoders), no
 * other eval; images also from data:/blob: URLs (charts, downloads).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "style-src 'self'", "img-src 'self' data: blob:",
  "connect-src 'self'", "worker-src 'self' blob:", "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
].join('; ');

function securityHeaders(reply: FastifyReply): void {
  void reply.headers({
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
  });
}

function belongsToServer(url: string): boolean {
  const path = url.split('?')[0]!;
  if (BROWSER_PAGES.test(path)) return false;
  return SERVER_PREFIXES.some((p) => path === p.slice(0, -1) || path.startsWith(p));
}

/**
 * Serves the built app from `root` on the server's root instance (its
 * not-found handler is the server's); without a build, `/` says how to make one.
 */
export async function serveWebApp(app: FastifyInstance, root: string): Promise<void> {
  const built = existsSync(`${root}/index.html`);
  app.addHook('onRequest', async (req, reply) => {
    if (!belongsToServer(req.url)) securityHeaders(reply);
  });
  if (built) {
    // index.html is never cached (it names the current build's files); the hashed assets are, for a year.
    await app.register(fastifyStatic, {
      root, wildcard: false, index: false, cacheControl: false,
      setHeaders: (reply, path) => void reply.header('cache-control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache'),
    });
  }
  const page = (reply: FastifyReply): FastifyReply => built
    ? reply.header('cache-control', 'no-cache').sendFile('index.html')
    : reply.code(503).type('text/plain; charset=utf-8').send('the web interface is not built: run `npm run build` in the holdfast package\n');
  app.get('/', (_req, reply) => page(reply));
  // The snapshot browser's addresses are the app's, though under /safes: `browse` is no object folder of the repository protocol.
  app.get('/safes/:safe/browse', (_req, reply) => page(reply));
  app.get('/safes/:safe/browse/*', (_req, reply) => page(reply));
  app.setNotFoundHandler((req, reply) => {
    if ((req.method === 'GET' || req.method === 'HEAD') && !belongsToServer(req.url) && !/\.[a-z0-9]+$/i.test(req.url.split('?')[0]!)) return page(reply);
    return reply.code(404).send({ code: 'NO_SUCH_ROUTE', message: `no such route: ${req.method} ${req.url.split('?')[0]}` });
  });
}
