/**
 * The dirty bits of several bitmaps from one qemu-nbd export, read in this process: the NBD
 * protocol's block-status query (NetworkBlockDevice/nbd doc/proto.md), the same question
 * `qemu-img map --image-opts driver=nbd,…,x-dirty-bitmap=qemu:dirty-bitmap:NAME` asks — but for
 * every bitmap at once and without a qemu-img process per bitmap. The bits are still QEMU's:
 * qemu-nbd (`-B NAME`) turns each persistent bitmap into the metadata context
 * `qemu:dirty-bitmap:NAME`, whose extents carry flag bit 0 (NBD_STATE_DIRTY) where the bitmap is set.
 *
 * Only what this needs: fixed newstyle handshake, structured replies, NBD_OPT_SET_META_CONTEXT,
 * NBD_OPT_GO on the default export (""), NBD_CMD_BLOCK_STATUS over the whole export, NBD_CMD_DISC.
 * Any protocol surprise is an error (the caller reports it as a harness failure, never as bits).
 */
import * as net from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const OPT_SET_META_CONTEXT = 10;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_META_CONTEXT = 4;
const REP_ERROR_BIT = 0x80000000;
const INFO_EXPORT = 0;
const CMD_DISC = 2;
const CMD_BLOCK_STATUS = 7;
const REPLY_FLAG_DONE = 1;
const REPLY_TYPE_NONE = 0;
const REPLY_TYPE_BLOCK_STATUS = 5;
const REPLY_TYPE_ERROR_BIT = 0x8000;
const STATE_DIRTY = 1;
/** Block-status requests cover at most this much (the length field is 32 bits). */
const MAX_REQUEST = 0x40000000;

export interface DirtyExtent {
  offset: number;
  length: number;
}

export class NbdProtocolError extends Error {
  override name = 'NbdProtocolError';
}

/** Bytes from a socket, read in exact amounts. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failed: Error | undefined;

  constructor(sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.pump();
    });
    const fail = (e: Error): void => {
      this.failed ??= e;
      const w = this.want;
      this.want = undefined;
      w?.reject(this.failed);
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new NbdProtocolError('the NBD server closed the connection')));
  }

  private pump(): void {
    const w = this.want;
    if (!w || this.buf.length < w.n) return;
    this.want = undefined;
    const out = this.buf.subarray(0, w.n);
    this.buf = this.buf.subarray(w.n);
    w.resolve(out);
  }

  read(n: number): Promise<Buffer> {
    if (this.buf.length < n && this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.pump();
    });
  }
}

function option(opt: number, data: Buffer): Buffer {
  const head = Buffer.alloc(16);
  head.writeBigUInt64BE(IHAVEOPT, 0);
  head.writeUInt32BE(opt, 8);
  head.writeUInt32BE(data.length, 12);
  return Buffer.concat([head, data]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** One option reply: its type and data (an error reply throws, with the server's message). */
async function optionReply(r: ByteReader, opt: number): Promise<{ type: number; data: Buffer }> {
  const head = await r.read(20);
  if (head.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new NbdProtocolError('bad option reply magic');
  if (head.readUInt32BE(8) !== opt)
    throw new NbdProtocolError(`reply to option ${head.readUInt32BE(8)}, not ${opt}`);
  const type = head.readUInt32BE(12);
  const data = await r.read(head.readUInt32BE(16));
  if (type & REP_ERROR_BIT)
    throw new NbdProtocolError(
      `option ${opt} refused (reply type 0x${type.toString(16)}): ${data.toString('utf8')}`,
    );
  return { type, data };
}

/**
 * The dirty ranges of each named bitmap of the export at the unix socket `sock` (qemu-nbd started
 * with `-B NAME` for each), adjacent ranges merged, in the bitmaps' order.
 */
export async function nbdDirtyRanges(
  sock: string,
  names: readonly string[],
): Promise<Map<string, DirtyExtent[]>> {
  const socket = net.createConnection(sock);
  const r = new ByteReader(socket);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    // Handshake: the server's greeting, then our flags.
    const hello = await r.read(18);
    if (hello.readBigUInt64BE(0) !== NBDMAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT)
      throw new NbdProtocolError('not a newstyle NBD server');
    const serverFlags = hello.readUInt16BE(16);
    if (!(serverFlags & FLAG_FIXED_NEWSTYLE)) throw new NbdProtocolError('server without fixed newstyle');
    socket.write(u32(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES)));

    socket.write(option(OPT_STRUCTURED_REPLY, Buffer.alloc(0)));
    if ((await optionReply(r, OPT_STRUCTURED_REPLY)).type !== REP_ACK)
      throw new NbdProtocolError('structured replies not acknowledged');

    // The metadata contexts: one per bitmap, on the default export "".
    const queries = names.map((n) => Buffer.from(`qemu:dirty-bitmap:${n}`, 'utf8'));
    socket.write(
      option(
        OPT_SET_META_CONTEXT,
        Buffer.concat([u32(0), u32(queries.length), ...queries.flatMap((q) => [u32(q.length), q])]),
      ),
    );
    const contextName = new Map<number, string>();
    for (;;) {
      const rep = await optionReply(r, OPT_SET_META_CONTEXT);
      if (rep.type === REP_ACK) break;
      if (rep.type !== REP_META_CONTEXT) continue;
      const name = rep.data
        .subarray(4)
        .toString('utf8')
        .replace(/^qemu:dirty-bitmap:/, '');
      contextName.set(rep.data.readUInt32BE(0), name);
    }
    const missing = names.filter((n) => ![...contextName.values()].includes(n));
    if (missing.length > 0)
      throw new NbdProtocolError(`no metadata context for bitmap(s) ${missing.join(', ')}`);

    socket.write(option(OPT_GO, Buffer.concat([u32(0), Buffer.alloc(2)])));
    let size: number | undefined;
    for (;;) {
      const rep = await optionReply(r, OPT_GO);
      if (rep.type === REP_ACK) break;
      if (rep.type === REP_INFO && rep.data.readUInt16BE(0) === INFO_EXPORT)
        size = Number(rep.data.readBigUInt64BE(2));
    }
    if (size === undefined) throw new NbdProtocolError('no export size');

    // Block status over the whole export: each context's extents, from where each has reached.
    const reached = new Map<number, number>([...contextName.keys()].map((id) => [id, 0]));
    const ranges = new Map<number, DirtyExtent[]>([...contextName.keys()].map((id) => [id, []]));
    let cookie = 1n;
    for (;;) {
      const from = Math.min(...reached.values());
      if (from >= size) break;
      const req = Buffer.alloc(28);
      req.writeUInt32BE(REQUEST_MAGIC, 0);
      req.writeUInt16BE(0, 4);
      req.writeUInt16BE(CMD_BLOCK_STATUS, 6);
      req.writeBigUInt64BE(cookie, 8);
      req.writeBigUInt64BE(BigInt(from), 16);
      req.writeUInt32BE(Math.min(MAX_REQUEST, size - from), 24);
      socket.write(req);
      for (let done = false; !done;) {
        const head = await r.read(4);
        const magic = head.readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) {
          const rest = await r.read(12);
          throw new NbdProtocolError(`block status failed: error ${rest.readUInt32BE(0)}`);
        }
        if (magic !== STRUCTURED_REPLY_MAGIC) throw new NbdProtocolError('bad reply magic');
        const chunk = await r.read(16);
        const flags = chunk.readUInt16BE(0);
        const type = chunk.readUInt16BE(2);
        if (chunk.readBigUInt64BE(4) !== cookie) throw new NbdProtocolError('reply to another request');
        const payload = await r.read(chunk.readUInt32BE(12));
        done = (flags & REPLY_FLAG_DONE) !== 0;
        if (type & REPLY_TYPE_ERROR_BIT) {
          const len = payload.length >= 6 ? payload.readUInt16BE(4) : 0;
          throw new NbdProtocolError(
            `block status failed: error ${payload.readUInt32BE(0)}: ${payload.subarray(6, 6 + len).toString('utf8')}`,
          );
        }
        if (type === REPLY_TYPE_NONE) continue;
        if (type !== REPLY_TYPE_BLOCK_STATUS) throw new NbdProtocolError(`unexpected reply type ${type}`);
        const id = payload.readUInt32BE(0);
        const list = ranges.get(id);
        if (!list) throw new NbdProtocolError(`extents for an unknown context ${id}`);
        let at = from;
        for (let p = 4; p + 8 <= payload.length; p += 8) {
          const length = payload.readUInt32BE(p);
          const dirty = (payload.readUInt32BE(p + 4) & STATE_DIRTY) !== 0;
          // (a context already past this request's start keeps what it had: only what is new counts)
          const start = Math.max(at, reached.get(id)!);
          const end = at + length;
          if (dirty && end > start) {
            const last = list[list.length - 1];
            if (last && last.offset + last.length === start) last.length += end - start;
            else list.push({ offset: start, length: end - start });
          }
          at = end;
        }
        if (at <= from) throw new NbdProtocolError('block status made no progress');
        reached.set(id, Math.max(reached.get(id)!, at));
      }
      cookie++;
    }
    const disc = Buffer.alloc(28);
    disc.writeUInt32BE(REQUEST_MAGIC, 0);
    disc.writeUInt16BE(CMD_DISC, 6);
    disc.writeBigUInt64BE(cookie, 8);
    socket.write(disc);
    const byName = new Map([...contextName].map(([id, name]) => [name, ranges.get(id)!]));
    return new Map(names.map((n) => [n, byName.get(n)!]));
  } finally {
    socket.end();
    socket.destroy();
  }
}
