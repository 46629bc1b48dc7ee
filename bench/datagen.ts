// Deterministic synthetic data shared by the stream and many-files generators
// (bench/stream-gen.ts, bench/manyfiles-gen.ts): a small PRNG and a pool of
// log-like text (compressible, but not trivially: varied hosts, pids, users,
// addresses, numbers).

/** mulberry32: tiny, fast, good enough for picking sizes and kinds. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const SERVICES = ['sshd', 'nginx', 'postgres', 'kernel', 'systemd', 'cron', 'dockerd', 'haproxy', 'redis-server', 'holdfast'];
const VERBS = ['Accepted publickey for', 'Connection closed by', 'GET /api/v1/items', 'POST /login', 'checkpoint starting:', 'Started Session', 'Failed password for', 'upstream timed out', 'temporary file: path', 'rotating log'];
const WORDS = ['alpha', 'beta', 'gamma', 'delta', 'backup', 'restore', 'index', 'pack', 'chunk', 'tree', 'snapshot', 'worker', 'queue', 'cache', 'lock', 'user', 'admin', 'deploy', 'www-data', 'postgres'];

function pick<T>(r: () => number, a: readonly T[]): T {
  return a[r() % a.length] as T;
}

/** One log-like line (ends in '\n'). */
export function logLine(r: () => number): string {
  const t = 1_700_000_000 + (r() % 30_000_000);
  const ms = String(r() % 1000).padStart(3, '0');
  const ip = `10.${r() % 256}.${r() % 256}.${r() % 256}`;
  const words = Array.from({ length: 1 + (r() % 6) }, () => pick(r, WORDS)).join(' ');
  return `${new Date(t * 1000).toISOString().slice(0, 19)}.${ms}Z host-${r() % 64} ${pick(r, SERVICES)}[${r() % 65536}]: ${pick(r, VERBS)} ${words} from ${ip} port ${1024 + (r() % 64000)} took=${r() % 100000}us id=${r().toString(16)}\n`;
}

/** `size` bytes of log-like text, deterministic for `seed`. */
export function textPool(seed: number, size: number): Buffer {
  const r = prng(seed);
  const parts: string[] = [];
  let len = 0;
  while (len < size) {
    const l = logLine(r);
    parts.push(l);
    len += l.length;
  }
  return Buffer.from(parts.join(''), 'latin1').subarray(0, size);
}

/** Fills `buf` with PRNG bytes (incompressible; cheap, for small buffers). */
export function fillRandom(r: () => number, buf: Buffer): void {
  let i = 0;
  for (; i + 4 <= buf.length; i += 4) buf.writeUInt32LE(r(), i);
  for (; i < buf.length; i++) buf[i] = r() & 0xff;
}
