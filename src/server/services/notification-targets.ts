/**
 * Where notifications may be sent: never, unless the provider allows it by
 * name, to the server's own network (a webhook URL or an SMTP host is a
 * customer's input, and the server would otherwise fetch whatever it
 * points at: its loopback, the private networks, the cloud's metadata
 * service). docs/decisions.md "Notifications: internal targets".
 *
 * A target's name is resolved and every address it has is checked, when
 * the channel is made or changed and again at each delivery; the delivery
 * then connects to the address checked (the senders pin it), so that a
 * name whose answer changes between the check and the connection cannot
 * lead elsewhere.
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** A target refused: internal and not allowed, or not resolvable. */
export class TargetRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetRefused';
  }
}

/** The networks no notification goes to unless allowed: loopback, private, link-local (and so the metadata service), ULA, unspecified, CGNAT, multicast, reserved. */
const INTERNAL = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) INTERNAL.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) INTERNAL.addSubnet(net, bits, 'ipv6');

/** Every address a host name has, as `dns.lookup` answers with `all`: the system's resolver by default (tests give their own). */
export type HostResolver = (host: string) => Promise<readonly { address: string; family: number }[]>;

const systemResolver: HostResolver = (host) => lookup(host, { all: true, verbatim: true });

/** The provider's exceptions: named hosts, addresses and networks (CIDR) notifications may reach although internal (`--notifications-allow`). */
export class TargetPolicy {
  private readonly names = new Set<string>();
  private readonly nets = new BlockList();

  /** `allow`: entries as `10.0.0.0/8`, `fd00::/8`, `127.0.0.1`, `smtp.internal`; a bad CIDR throws. `resolver`: how names are resolved. */
  constructor(allow: readonly string[] = [], private readonly resolver: HostResolver = systemResolver) {
    for (const raw of allow) {
      const entry = raw.trim().toLowerCase();
      if (entry === '') continue;
      const [net, bits] = entry.split('/');
      const family = isIP(net ?? '');
      if (family === 0) {
        if (bits !== undefined) throw new Error(`--notifications-allow: ${raw} is not a network (ADDRESS/BITS)`);
        this.names.add(entry);
        continue;
      }
      const type = family === 4 ? 'ipv4' : 'ipv6';
      const n = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
      if (!Number.isInteger(n) || n < 0 || n > (family === 4 ? 32 : 128)) throw new Error(`--notifications-allow: ${raw} has a bad prefix length`);
      this.nets.addSubnet(net!, n, type);
    }
  }

  /** Whether `address` (an IP) may be reached: public, or internal and allowed. */
  allows(address: string): boolean {
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    const ip = v4 ?? address;
    const type = isIP(ip) === 4 ? 'ipv4' : 'ipv6';
    return !INTERNAL.check(ip, type) || this.nets.check(ip, type);
  }

  /**
   * Resolves `host` and checks every address it has; returns the one to
   * connect to. Throws TargetRefused when the name does not resolve or any
   * address is internal and not allowed (a name allowed by the provider is
   * not checked).
   */
  async resolve(host: string): Promise<{ address: string; family: 4 | 6 }> {
    const name = host.replace(/^\[(.*)\]$/, '$1').toLowerCase().replace(/\.$/, '');
    let addresses: readonly { address: string; family: number }[];
    if (isIP(name) !== 0) addresses = [{ address: name, family: isIP(name) }];
    else {
      try {
        addresses = await this.resolver(name);
      } catch {
        throw new TargetRefused(`the host ${name} does not resolve`);
      }
      if (addresses.length === 0) throw new TargetRefused(`the host ${name} does not resolve`);
    }
    if (!this.names.has(name)) {
      const refused = addresses.find((a) => !this.allows(a.address));
      if (refused !== undefined) {
        throw new TargetRefused(`the host ${name} is on an internal network (${refused.address}): notifications are not sent there unless the server allows it (holdfast server --notifications-allow)`);
      }
    }
    const first = addresses[0]!;
    return { address: first.address, family: first.family === 6 ? 6 : 4 };
  }
}

/** A webhook URL for people and for errors: its scheme and host only (a Slack or Teams URL's path is its secret). */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}/…`;
  } catch {
    return '(a bad URL)';
  }
}
