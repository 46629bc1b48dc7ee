/**
 * Where the browser reads a disk safe's objects from: the seam between the
 * format (safe.ts) and the wire. `HttpSafeSource` speaks the repository
 * protocol of docs/format.md §2.5 to the holdfast server with the logged-in
 * user's session (read rights: GET and listings only); the Node tests read
 * a local repository through the same interface.
 */
import { ServerError } from './errors.js';

/** The object folders a reader lists (docs/format.md §2.2). */
export type Folder = 'keys' | 'index' | 'snapshots' | 'data';

/** A disk safe's objects, read only. */
export interface SafeSource {
  /** The whole object (`config`, or NAME in FOLDER); ServerError 404 when it does not exist. */
  get(folder: Folder | 'config', name: string, signal?: AbortSignal): Promise<Uint8Array>;
  /** `length` bytes of pack `name` from `offset`: exactly that many, or an error. */
  range(name: string, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Every name in the folder. */
  list(folder: Folder, signal?: AbortSignal): Promise<string[]>;
}

/** The repository protocol over fetch, to `/safes/SAFE` of the page's own server, with a bearer session token. */
export class HttpSafeSource implements SafeSource {
  constructor(private readonly safe: string, private readonly token: () => string | null, private readonly base = '') {}

  private url(path: string): string {
    return `${this.base}/safes/${encodeURIComponent(this.safe)}${path}`;
  }

  private async fetch(path: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    const token = this.token();
    const res = await fetch(this.url(path), { headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) }, ...(signal ? { signal } : {}) });
    if (!res.ok) {
      let body: { code?: string; message?: string } = {};
      try {
        body = await res.json() as typeof body;
      } catch {
        // Not the server's JSON error (a proxy's page): the status says it.
      }
      throw new ServerError(res.status, body.code ?? `HTTP_${res.status}`, body.message ?? `the server answered ${res.status} ${res.statusText}`);
    }
    return res;
  }

  async get(folder: Folder | 'config', name: string, signal?: AbortSignal): Promise<Uint8Array> {
    const res = await this.fetch(folder === 'config' ? '/config' : `/${folder}/${name}`, {}, signal);
    return new Uint8Array(await res.arrayBuffer());
  }

  async range(name: string, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    const res = await this.fetch(`/data/${name}`, { range: `bytes=${offset}-${offset + length - 1}` }, signal);
    const b = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 206 || b.length !== length) throw new ServerError(res.status, 'SHORT_READ', `pack ${name}: asked for ${length} bytes at ${offset}, got ${b.length}`);
    return b;
  }

  async list(folder: Folder, signal?: AbortSignal): Promise<string[]> {
    const names: string[] = [];
    let after: string | undefined;
    for (;;) {
      const res = await this.fetch(`/${folder}?limit=10000${after === undefined ? '' : `&after=${after}`}`, { accept: 'application/json' }, signal);
      const page = await res.json() as { objects: { name: string }[]; next?: string };
      for (const o of page.objects) {
        // Each page must go on after the one before (docs/format.md §2.5).
        if (after !== undefined && o.name <= after) throw new ServerError(res.status, 'BAD_LISTING', `the server's listing of ${folder} went backwards`);
        names.push(o.name);
        after = o.name;
      }
      if (page.next === undefined) return names;
      after = page.next;
    }
  }
}
