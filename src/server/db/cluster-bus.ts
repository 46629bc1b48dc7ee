/**
 * Word between the server nodes that share one database: a node that queues
 * an agent's job tells every node, so that the agent's long poll, waiting on
 * whichever node it reached, answers at once (services/job-signals.ts).
 *
 *   PostgreSQL   NOTIFY on the pool; each node LISTENs on one connection of
 *                its own. A listening connection that breaks is made again,
 *                and the subscriber is told (`onGap`): what was said
 *                meanwhile is lost, so it looks at the database again.
 *   SQLite       one node only (the file is on its machine): nothing to say.
 *
 * A message is a hint, never the record: the database is; a lost one delays
 * a job by at most the poll's wait, never loses it.
 */
import pg from 'pg';

/** What nodes say to each other. */
export interface ClusterBus {
  /** Says `payload` on `channel` to every node (this one included, on PostgreSQL). */
  publish(channel: string, payload: string): Promise<void>;
  /**
   * Calls `onMessage` with what any node says on `channel` from now on;
   * `onGap` when messages may have been lost (the listening connection was
   * made again). One subscriber per channel.
   */
  subscribe(channel: string, onMessage: (payload: string) => void, onGap: () => void): Promise<void>;
  /** Stops listening; idempotent. */
  close(): Promise<void>;
}

/** The bus of a database no other node shares. */
export const SOLO_BUS: ClusterBus = {
  publish: () => Promise.resolve(),
  subscribe: () => Promise.resolve(),
  close: () => Promise.resolve(),
};

/** How long a broken listening connection waits before it is made again. */
const RECONNECT_MS = 1000;

/** Channel names are identifiers: only these characters are let through to LISTEN. */
const CHANNEL = /^[a-z_][a-z0-9_]*$/;

/** The bus of PostgreSQL at `url`; `pool` says (NOTIFY), a connection of its own listens. */
export function postgresBus(url: string, pool: pg.Pool): ClusterBus {
  const handlers = new Map<string, { onMessage: (payload: string) => void; onGap: () => void }>();
  let client: pg.Client | undefined;
  let connecting: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const connect = (): Promise<void> => (connecting ??= (async () => {
    const c = new pg.Client({ connectionString: url });
    c.on('notification', (n) => handlers.get(n.channel)?.onMessage(n.payload ?? ''));
    const broken = (): void => {
      if (client !== c) return;
      client = undefined;
      void c.end().catch(() => undefined);
      if (!closed) timer = setTimeout(() => void reconnect(), RECONNECT_MS);
    };
    c.on('error', broken);
    c.on('end', broken);
    await c.connect();
    for (const ch of handlers.keys()) await c.query(`LISTEN ${ch}`);
    client = c;
  })().finally(() => {
    connecting = undefined;
  }));

  const reconnect = async (): Promise<void> => {
    if (closed) return;
    try {
      await connect();
      for (const h of handlers.values()) h.onGap();
    } catch {
      if (!closed) timer = setTimeout(() => void reconnect(), RECONNECT_MS);
    }
  };

  return {
    async publish(channel, payload) {
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async subscribe(channel, onMessage, onGap) {
      if (!CHANNEL.test(channel)) throw new Error(`not a channel name: ${channel}`);
      handlers.set(channel, { onMessage, onGap });
      if (client) await client.query(`LISTEN ${channel}`);
      else await connect();
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await connecting?.catch(() => undefined);
      const c = client;
      client = undefined;
      await c?.end().catch(() => undefined);
    },
  };
}
