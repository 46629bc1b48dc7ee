/**
 * Saving a file or an archive the page decrypts, without holding it whole:
 * a service worker (download-sw.js) answers a download address with a
 * stream that pulls each part from here as the browser writes it to disk.
 * Where no service worker can run (a private window that forbids them, a
 * certificate the browser does not trust), the parts are gathered into a
 * Blob instead, which holds the whole download in memory: the page says so.
 *
 * Chosen over the File System Access API (showSaveFilePicker), which
 * streams too but only in Chromium and only after a native dialog, and over
 * a Blob, which holds everything (docs/decisions.md).
 */
import { concatBytes } from '../zk/bytes.js';
import swUrl from './download-sw.js?url';

/** The bytes handed to the service worker at a time, at least (a part larger than this goes whole). */
const PULL_BYTES = 256 * 1024;

let registration: Promise<ServiceWorkerRegistration | undefined> | undefined;

/** The download worker, registered once; undefined where service workers cannot run. */
function downloadWorker(): Promise<ServiceWorkerRegistration | undefined> {
  return registration ??= (async () => {
    if (!('serviceWorker' in navigator)) return undefined;
    try {
      const r = await navigator.serviceWorker.register(swUrl, { scope: new URL('./', new URL(swUrl, location.href)).pathname });
      const w = r.installing ?? r.waiting ?? r.active;
      if (w && w.state !== 'activated') await new Promise<void>((resolve) => w.addEventListener('statechange', () => { if (w.state === 'activated') resolve(); }));
      return r;
    } catch {
      return undefined;
    }
  })();
}

/** How a download went: streamed through the worker, or gathered in memory. */
export type SaveMode = 'streamed' | 'in-memory';

/**
 * Saves `parts` as a file named `name` (`size` bytes, when known): resolves
 * once the browser has taken the last part; rejects with the reader's error
 * (the browser's download then fails, and no partial file is kept).
 */
export async function saveStream(name: string, size: number | undefined, parts: AsyncIterator<Uint8Array>): Promise<SaveMode> {
  const reg = await downloadWorker();
  if (!reg?.active) {
    const chunks: BlobPart[] = [];
    for (let r = await parts.next(); !r.done; r = await parts.next()) chunks.push(r.value as Uint8Array<ArrayBuffer>);
    clickLink(URL.createObjectURL(new Blob(chunks)), name);
    return 'in-memory';
  }
  const id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
  const channel = new MessageChannel();
  const done = new Promise<SaveMode>((resolve, reject) => {
    channel.port1.onmessage = async (e: MessageEvent<{ type: string }>) => {
      if (e.data.type === 'ready') {
        // A navigation, not a link with `download`: Chromium sends a navigation through the service worker whose scope holds it.
        const frame = document.createElement('iframe');
        frame.hidden = true;
        frame.src = new URL(`zk-download/${id}`, reg.scope).href;
        document.body.append(frame);
        setTimeout(() => frame.remove(), 60_000);
      } else if (e.data.type === 'pull') {
        try {
          // Small parts (an archive's headers, small files) gathered up to PULL_BYTES: one message each made a folder of 10,000 files slow.
          const gathered: Uint8Array[] = [];
          let size = 0;
          let ended = false;
          while (size < PULL_BYTES && !ended) {
            const r = await parts.next();
            if (r.done) ended = true;
            else {
              gathered.push(r.value);
              size += r.value.length;
            }
          }
          // The end goes alone, in answer to the next pull (a finished generator says done again).
          if (gathered.length > 0) {
            const bytes = concatBytes(gathered);
            channel.port1.postMessage({ type: 'chunk', bytes: bytes.buffer }, [bytes.buffer]);
          } else {
            channel.port1.postMessage({ type: 'end' });
            resolve('streamed');
          }
        } catch (err) {
          channel.port1.postMessage({ type: 'error', message: (err as Error).message });
          reject(err as Error);
        }
      } else if (e.data.type === 'cancel') {
        void parts.return?.(undefined);
        reject(new Error('the download was cancelled'));
      }
    };
  });
  reg.active.postMessage({ type: 'download', id, name, size }, [channel.port2]);
  return done;
}

function clickLink(href: string, name: string): void {
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
}
