/**
 * Constants and message layouts of the NBD protocol (the "fixed newstyle"
 * handshake and the transmission phase), from the protocol specification
 * (NetworkBlockDevice/nbd, doc/proto.md), shared by the server
 * (src/server-nbd) and the client (nbd-client.ts). Every integer on the wire is
 * big-endian.
 *
 *   S: "NBDMAGIC" "IHAVEOPT" u16 handshake flags      C: u32 client flags
 *   C: "IHAVEOPT" u32 option u32 length data          S: u64 0x3e889045565a9 u32 option u32 reply u32 length data
 *   … until NBD_OPT_GO (or NBD_OPT_EXPORT_NAME), then
 *   C: u32 0x25609513 u16 flags u16 type u64 cookie u64 offset u32 length [data]
 *   S: u32 0x67446698 u32 error u64 cookie [data]                         (simple reply)
 *   S: u32 0x668e33ef u16 flags u16 type u64 cookie u32 length payload      (structured reply chunk)
 */

export const NBDMAGIC = Buffer.from('NBDMAGIC', 'latin1');
export const IHAVEOPT = Buffer.from('IHAVEOPT', 'latin1');
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
/** Client flags. */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const TFLAG = {
  HAS_FLAGS: 1 << 0, READ_ONLY: 1 << 1, SEND_FLUSH: 1 << 2, SEND_FUA: 1 << 3, ROTATIONAL: 1 << 4, SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6, SEND_DF: 1 << 7, CAN_MULTI_CONN: 1 << 8, SEND_RESIZE: 1 << 9, SEND_CACHE: 1 << 10, SEND_FAST_ZERO: 1 << 11,
} as const;

/** Options. */
export const OPT = {
  EXPORT_NAME: 1, ABORT: 2, LIST: 3, PEEK_EXPORT: 4, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10, EXTENDED_HEADERS: 11,
} as const;

/** Option replies. */
export const REP = {
  ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001, ERR_POLICY: 0x80000002, ERR_INVALID: 0x80000003, ERR_PLATFORM: 0x80000004, ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006, ERR_SHUTDOWN: 0x80000007, ERR_BLOCK_SIZE_REQD: 0x80000008, ERR_TOO_BIG: 0x80000009,
} as const;

/** Information types in NBD_REP_INFO. */
export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Commands. */
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7, RESIZE: 8 } as const;

/** Command flags. */
export const CMD_FLAG = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4, PAYLOAD_LEN: 1 << 5 } as const;

/** Structured reply chunk types and flags. */
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: (1 << 15) + 1, ERROR_OFFSET: (1 << 15) + 2 } as const;

/** base:allocation flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

/** Error values (fixed by the protocol, not the host's errno). */
export const ERR = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108 } as const;

/** The one metadata context served. */
export const BASE_ALLOCATION = 'base:allocation';

/** Names of options, for logs. */
export const OPT_NAMES: Record<number, string> = Object.fromEntries(Object.entries(OPT).map(([k, v]) => [v, `NBD_OPT_${k}`]));

/** An option reply: magic, option, reply type, length, data. */
export function optionReply(option: number, reply: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  h.writeUInt32BE(option >>> 0, 8);
  h.writeUInt32BE(reply >>> 0, 12);
  h.writeUInt32BE(data.length, 16);
  return Buffer.concat([h, data]);
}

/** A simple reply header (data, for a successful read, follows it). */
export function simpleReply(cookie: Buffer, error: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  h.writeUInt32BE(error, 4);
  cookie.copy(h, 8);
  return h;
}

/** A structured reply chunk header (payload follows it). */
export function structuredChunk(cookie: Buffer, flags: number, type: number, payloadLength: number): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  cookie.copy(h, 8);
  h.writeUInt32BE(payloadLength, 16);
  return h;
}

/** Payload of an NBD_REPLY_TYPE_ERROR chunk. */
export function errorPayload(error: number, message: string): Buffer {
  const msg = Buffer.from(message.slice(0, 1024), 'utf8');
  const b = Buffer.alloc(6 + msg.length);
  b.writeUInt32BE(error, 0);
  b.writeUInt16BE(msg.length, 4);
  msg.copy(b, 6);
  return b;
}
