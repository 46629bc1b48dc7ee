/**
 * The server's budget of upload bodies held in memory (repo-routes.ts holds
 * each body whole until it is checked and stored): a bound for all safes
 * together, a share for each principal (a token) and a share for each
 * customer (all its tokens together: several tokens of one customer must
 * not together take what a share keeps one from taking). An upload reserves its
 * bytes in steps as they arrive, not its declared size at once: a body
 * declared large and sent slowly holds one step, not the budget (a security
 * review held off every other customer's upload with one PUT declaring
 * 1.5 GB and sending 70 KiB every 20 s, which the pace rule lets through).
 *
 * A step is granted when
 *   - the server's held bytes stay within `total`, or the upload is the only one held
 *     (a pack may be larger than the whole budget);
 *   - its principal's held bytes stay within `share`, or the upload is the principal's
 *     only one (a pack may be larger than a share);
 *   - its customer's held bytes stay within `customerShare`, or the upload is the
 *     customer's only one;
 * and an upload whose principal holds more than its share, or whose customer
 * more than its share, gives way: a step of another principal within its own
 * shares that finds the server full cuts it (it is answered 503 BUSY and
 * retried by its client), so that bytes over a share are only ever held
 * while nobody else needs them.
 */

/** A step refused or an upload cut: the request is answered 503 BUSY, which clients retry. */
export class UploadBusyError extends Error {}

/** The bounds of an UploadBudget, in bytes. */
export interface UploadBudgetLimits {
  /** The most bytes held at once, all principals together. */
  readonly total: number;
  /** The most bytes one principal holds at once. */
  readonly share: number;
  /** The most bytes one customer's principals hold at once, together. */
  readonly customerShare: number;
  /** What an upload reserves at a time, as its body arrives. */
  readonly step: number;
}

/** One upload's hold on the budget (UploadBudget.open). */
export interface UploadHold {
  /**
   * Makes sure the first `bytes` of the body are reserved, reserving the
   * steps that cover them; throws UploadBusyError when a step is refused or
   * the upload was cut.
   */
  cover(bytes: number): void;
  /** Called once when the upload is cut to make room for others, with the reason; set by the reader of the body. */
  onCut?: (e: UploadBusyError) => void;
  /** Gives back what the upload holds; idempotent. */
  release(): void;
}

/** Who uploads: the principal (a token), and the customer it uploads for (absent: the principal is its own). */
export interface Uploader {
  readonly principal: string;
  readonly customer?: string;
}

interface Upload {
  readonly principal: string;
  readonly customer: string;
  readonly size: number;
  reserved: number;
  cut?: UploadBusyError;
  readonly hold: UploadHold;
}

/** The budget of one server process (see the module comment). */
export class UploadBudget {
  private held = 0;
  /** Bytes held by principal. */
  private readonly heldBy = new Map<string, number>();
  /** Bytes held by customer. */
  private readonly heldFor = new Map<string, number>();
  private readonly uploads = new Set<Upload>();

  constructor(private readonly limits: UploadBudgetLimits) {}

  /**
   * Starts an upload of `size` declared bytes by `who`, reserving its
   * first step before the caller awaits anything (so that uploads arriving
   * together are all counted); throws UploadBusyError when refused.
   */
  open(who: Uploader, size: number): UploadHold {
    const u: Upload = {
      principal: who.principal, customer: who.customer ?? `principal ${who.principal}`, size, reserved: 0,
      hold: { cover: (bytes) => this.cover(u, bytes), release: () => this.release(u) },
    };
    this.uploads.add(u);
    try {
      this.cover(u, 1);
    } catch (e) {
      this.release(u);
      throw e;
    }
    return u.hold;
  }

  private cover(u: Upload, bytes: number): void {
    if (u.cut !== undefined) throw u.cut;
    if (bytes <= u.reserved || u.reserved >= u.size) return;
    const target = Math.min(u.size, Math.ceil(bytes / this.limits.step) * this.limits.step);
    this.grant(u, target - u.reserved);
  }

  private grant(u: Upload, n: number): void {
    const { total, share, customerShare } = this.limits;
    const mine = this.heldBy.get(u.principal) ?? 0;
    const ours = this.heldFor.get(u.customer) ?? 0;
    const withinShare = mine + n <= share;
    const withinCustomerShare = ours + n <= customerShare;
    if (!withinShare && mine !== u.reserved) {
      throw new UploadBusyError(`the token's uploads hold ${mine} bytes already (at most ${share}); try again`);
    }
    if (!withinCustomerShare && ours !== u.reserved) {
      throw new UploadBusyError(`the customer's uploads hold ${ours} bytes already (at most ${customerShare}, all its tokens together); try again`);
    }
    const alone = this.held === u.reserved;
    if (!alone && this.held + n > total && withinShare && withinCustomerShare) this.makeRoom(this.held + n - total, u);
    if (!alone && this.held + n > total) {
      throw new UploadBusyError(`the server holds ${this.held} bytes of uploads already (at most ${total}); try again`);
    }
    u.reserved += n;
    this.held += n;
    this.heldBy.set(u.principal, mine + n);
    this.heldFor.set(u.customer, ours + n);
  }

  /**
   * Cuts uploads of other principals over their share, and of other
   * customers over theirs, largest first, when that frees `needed` bytes
   * for `u`; else cuts none.
   */
  private makeRoom(needed: number, u: Upload): void {
    const over = [...this.uploads]
      .filter((x) => x.principal !== u.principal && ((this.heldBy.get(x.principal) ?? 0) > this.limits.share
        || (x.customer !== u.customer && (this.heldFor.get(x.customer) ?? 0) > this.limits.customerShare)))
      .sort((a, b) => b.reserved - a.reserved);
    let freed = 0;
    const cut: Upload[] = [];
    for (const x of over) {
      if (freed >= needed) break;
      cut.push(x);
      freed += x.reserved;
    }
    if (freed < needed) return;
    for (const x of cut) {
      x.cut = new UploadBusyError(`the upload held ${x.reserved} bytes, more than its token's share of ${this.limits.share} or its customer's of ${this.limits.customerShare}, when others needed them; try again`);
      this.release(x);
      x.hold.onCut?.(x.cut);
    }
  }

  private release(u: Upload): void {
    if (!this.uploads.delete(u)) return;
    this.held -= u.reserved;
    for (const [held, key] of [[this.heldBy, u.principal], [this.heldFor, u.customer]] as const) {
      const left = (held.get(key) ?? 0) - u.reserved;
      if (left > 0) held.set(key, left);
      else held.delete(key);
    }
    u.reserved = 0;
  }
}
