/**
 * Enrolment of a machine by its agent: a customer token with the `enroll`
 * right (made by a person, given to whoever installs agents) registers a
 * new machine of its customer, with a disk safe of its own, and gets the
 * machine's agent token (scoped to the machine, `backup` right). All three
 * are made together or not at all. The disk safe's password is made on the
 * machine and never reaches the server.
 */
import { randomBytes } from 'node:crypto';
import type { EnrolledBody, EnrollRequest } from '../../api/v1.js';
import { audit } from './audit.js';
import { insertToken } from './api-tokens.js';
import type { ServiceContext } from './context.js';
import { insertSafe } from './disk-safes.js';
import { Forbidden } from './errors.js';
import { insertMachine } from './machines.js';
import type { Principal } from './principal.js';

/** A safe name from a host name: lower case, what the pattern refuses as `-`, and 8 random hex digits (names are unique server-wide). */
function defaultSafeName(host: string): string {
  const base = host.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 40) || 'machine';
  return `${base}-${randomBytes(4).toString('hex')}`;
}

export async function enroll(ctx: ServiceContext, p: Principal, req: EnrollRequest): Promise<EnrolledBody> {
  if (p.kind !== 'token' || !p.rights.includes('enroll') || p.machineId !== null || p.customerId === null) {
    throw new Forbidden('enrolment needs a customer\'s API token with the enroll right');
  }
  const customerId = p.customerId;
  return ctx.db.transaction().execute(async (trx) => {
    const tx: ServiceContext = { ...ctx, db: trx };
    const machine = await insertMachine(tx, p, customerId, req.name);
    const safe = await insertSafe(tx, p, { customer_id: customerId, machine_id: machine.id, name: req.safe_name ?? defaultSafeName(req.name) });
    const { token, secret } = await insertToken(tx, p, { customer_id: customerId, machine_id: machine.id, name: `agent of ${req.name}`, rights: ['backup'] });
    await audit(tx, p, 'agent.enroll', machine.id, customerId);
    return { machine, safe, token, secret };
  });
}
