/**
 * Enrolment of a machine by its agent: a customer token with the `enroll`
 * right (made by a person, given to whoever installs agents) registers a
 * new machine of its customer, with a disk safe of its own, and gets the
 * machine's agent token (scoped to the machine, `backup` right). All three
 * are made together or not at all. The disk safe's password is made on the
 * machine and never reaches the server.
 *
 * A machine that replaces a retired one takes over its disk safe instead
 * (`take_over`: a safe of the same customer with no machine, its machine
 * retired or never had). That needs the customer's authorisation for that
 * safe: a takeover token, an `enroll` token a person of the customer (or
 * the provider) made for it (api-tokens.ts); a plain `enroll` token is
 * refused, and a takeover token enrols nothing else and is revoked by the
 * takeover. The agent has opened the safe with its password first (the
 * takeover token reads its config and keys, safe-access.ts), and the server
 * attaches the safe to the new machine.
 */
import { randomBytes } from 'node:crypto';
import type { EnrolledBody, EnrollRequest } from '../../api/v1.js';
import type { DiskSafe } from '../db/schema.js';
import { audit } from './audit.js';
import { insertToken } from './api-tokens.js';
import type { ServiceContext } from './context.js';
import { insertSafe, safeBody } from './disk-safes.js';
import { Conflict, Forbidden, NotFound } from './errors.js';
import { insertMachine } from './machines.js';
import type { Principal } from './principal.js';
import { lastBackups } from './snapshot-index.js';

/** A safe name from a host name: lower case, what the pattern refuses as `-`, and 8 random hex digits (names are unique within the customer: the suffix keeps a safe made by hand from refusing the enrolment). */
function defaultSafeName(host: string): string {
  const base = host.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 40) || 'machine';
  return `${base}-${randomBytes(4).toString('hex')}`;
}

/**
 * Attaches disk safe `name` of the customer to machine `machineId`, with
 * takeover token `p` made for it: Forbidden for a safe the token was not
 * made for, NotFound for no such safe, Conflict when a live machine has it.
 */
async function takeOver(ctx: ServiceContext, p: Principal, customerId: string, machineId: string, name: string): Promise<DiskSafe> {
  const s = await ctx.db.selectFrom('disk_safes').selectAll().where('name', '=', name).where('customer_id', '=', customerId).executeTakeFirst();
  if (p.token!.safe_id === null) throw new Forbidden(takeOverNeeds(name));
  if (!s) throw new NotFound(`disk safe ${name}`);
  if (s.id !== p.token!.safe_id) throw new Forbidden(`this takeover token was made for another disk safe than ${name}: ${takeOverNeeds(name)}`);
  // Only a safe without a machine: retire the machine that has it first.
  const attached = await ctx.db.updateTable('disk_safes').set({ machine_id: machineId }).where('id', '=', s.id).where('machine_id', 'is', null).executeTakeFirst();
  if (attached.numUpdatedRows === 0n) {
    const owner = await ctx.db.selectFrom('machines').select('name').where('id', '=', s.machine_id ?? '').executeTakeFirst();
    throw new Conflict(`disk safe ${name} belongs to machine ${owner?.name ?? s.machine_id ?? '?'}, which is live: retire it first (holdfast server machine delete ${owner?.name ?? s.machine_id ?? 'MACHINE'})`);
  }
  await audit(ctx, p, 'safe.take_over', s.id, customerId);
  return { ...s, machine_id: machineId };
}

/** What taking over disk safe `name` needs, for the refusals. */
function takeOverNeeds(name: string): string {
  return `taking over disk safe ${name} needs an enroll token the customer made for it (holdfast server token create --customer CUSTOMER --name NAME --rights enroll --take-over ${name})`;
}

export async function enroll(ctx: ServiceContext, p: Principal, req: EnrollRequest): Promise<EnrolledBody> {
  if (p.kind !== 'token' || !p.rights.includes('enroll') || p.machineId !== null || p.customerId === null) {
    throw new Forbidden('enrolment needs a customer\'s API token with the enroll right');
  }
  if (req.take_over === undefined && p.token!.safe_id !== null) throw new Forbidden('a takeover token enrols a machine onto the disk safe it was made for (take_over), nothing else');
  const customerId = p.customerId;
  let taken: DiskSafe | undefined;
  const enrolled = await ctx.db.transaction().execute(async (trx) => {
    const tx: ServiceContext = { ...ctx, db: trx };
    const machine = await insertMachine(tx, p, customerId, req.name);
    const safe = req.take_over === undefined
      ? await insertSafe(tx, p, { customer_id: customerId, machine_id: machine.id, name: req.safe_name ?? defaultSafeName(req.name) })
      : safeBody(taken = await takeOver(tx, p, customerId, machine.id, req.take_over), 0);
    const { token, secret } = await insertToken(tx, p, { customer_id: customerId, machine_id: machine.id, name: `agent of ${req.name}`, rights: ['backup'] });
    // A takeover token authorises one takeover: used up by it.
    if (req.take_over !== undefined) await tx.db.updateTable('api_tokens').set({ revoked_at: ctx.now().toISOString() }).where('id', '=', p.id).execute();
    await audit(tx, p, 'agent.enroll', machine.id, customerId);
    // A machine that takes a safe over has its backups.
    return { machine: { ...machine, last_backup_at: (await lastBackups(tx, [machine.id])).get(machine.id) ?? null }, safe, token, secret };
  });
  // A safe taken over has stored bytes, read once the transaction is over: the ledger reads the database itself (on SQLite, from inside the transaction it would wait for it for ever).
  return taken === undefined ? enrolled : { ...enrolled, safe: safeBody(taken, await ctx.usage.storedBytes(taken)) };
}
