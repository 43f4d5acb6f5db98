/**
 * QEMU's `nbd` protocol driver as a block device (block/nbd.c; the protocol: NBD's proto.md), the
 * part qemu-iotests 277 needs: a synchronous client over a UNIX or TCP (IPv4) socket, oldstyle
 * ("classic") and fixed-newstyle negotiation with NBD_OPT_EXPORT_NAME, simple replies, and QEMU's
 * `reconnect-delay`: a request whose connection breaks waits up to that many seconds for a new
 * connection and is then sent again; without it, it fails at once (EIO).
 *
 * Node has no synchronous sockets: socket(2) and connect(2) come from libc through koffi (as
 * io/libc.ts does), and the blocking descriptor is then read and written with fs.readSync/writeSync.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { IoError, Qcow2Error } from '../errors.ts';
import type { BlockDevice } from './device.ts';
import { strerror } from './errno.ts';

const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
const NBD_OLDSTYLE_MAGIC = 0x00420281861253n;
const NBD_OPTS_MAGIC = 0x49484156454f5054n; // "IHAVEOPT"
const NBD_REQUEST_MAGIC = 0x25609513;
const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
const NBD_OPT_EXPORT_NAME = 1;
const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Transmission flags. */
const NBD_FLAG_READ_ONLY = 1 << 1;
const NBD_FLAG_SEND_FLUSH = 1 << 2;
const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
/** QEMU's NBD_MAX_BUFFER_SIZE: the largest payload of one request. */
const MAX_REQUEST = 32 << 20;
const AF_UNIX = 1;
const AF_INET = 2;
const SOCK_STREAM = 1;

export type NbdServer = { type: 'unix'; path: string } | { type: 'inet'; host: string; port: number };

interface Sockets {
  socket(domain: number, type: number, proto: number): number;
  connect(fd: number, addr: Buffer, len: number): number;
  errno(): number;
}

let sockets: Sockets | undefined;

function sys(): Sockets {
  if (sockets) return sockets;
  let koffi: {
    load(p: string): { func(decl: string): (...a: unknown[]) => unknown };
    errno(): number;
  };
  try {
    koffi = createRequire(import.meta.url)('koffi') as typeof koffi;
  } catch {
    throw new Qcow2Error('UNKNOWN_DRIVER', "Unknown driver 'nbd'", { driver: 'nbd' });
  }
  const lib = koffi.load('libc.so.6');
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const connect = lib.func('int connect(int fd, const void *addr, uint32_t len)');
  sockets = {
    socket: (d, t, p) => socket(d, t, p) as number,
    connect: (fd, a, l) => connect(fd, a, l) as number,
    errno: () => koffi.errno(),
  };
  return sockets;
}

function sockaddr(server: NbdServer): Buffer {
  if (server.type === 'unix') {
    // struct sockaddr_un: sa_family_t, then the path (108 bytes, NUL-terminated).
    const b = Buffer.alloc(110);
    b.writeUInt16LE(AF_UNIX, 0);
    b.write(server.path, 2, 107, 'utf8');
    return b;
  }
  // struct sockaddr_in: family, port (network order), IPv4 address, 8 bytes of zeros.
  const host = server.host === 'localhost' ? '127.0.0.1' : server.host;
  const parts = host.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new Qcow2Error('INVALID_OPTION', `address resolution failed for ${server.host}`, { host });
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(server.port, 2);
  parts.forEach((p, i) => b.writeUInt8(p, 4 + i));
  return b;
}

/** The connection broke (EOF, reset): a request may be sent again on a new connection. */
class Disconnected extends Error {}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class NbdDevice implements BlockDevice {
  private fd = -1;
  private exportSize = 0;
  private flags = 0;
  private handle = 1n;
  readonly name: string;

  constructor(
    private readonly server: NbdServer,
    private readonly exportName: string,
    /** QEMU's reconnect-delay (seconds): how long a request waits for a new connection. */
    private readonly reconnectDelay: number,
    private readonly wantReadOnly: boolean,
  ) {
    this.name =
      server.type === 'unix'
        ? `nbd+unix:///${exportName}?socket=${server.path}`
        : `nbd://${server.host}:${server.port}/${exportName}`;
    const err = this.connect();
    if (err) {
      const where = server.type === 'unix' ? server.path : `${server.host}:${server.port}`;
      throw new IoError('EIO_OPEN', `Failed to connect to '${where}': ${err}`, { path: where, op: 'open' });
    }
  }

  get readOnly(): boolean {
    return this.wantReadOnly || (this.flags & NBD_FLAG_READ_ONLY) !== 0;
  }

  /** Connects and negotiates; the error text when it could not. */
  private connect(): string | undefined {
    const s = sys();
    const fd = s.socket(this.server.type === 'unix' ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return strerror(s.errno());
    const addr = sockaddr(this.server);
    if (s.connect(fd, addr, addr.length) < 0) {
      const e = s.errno();
      fs.closeSync(fd);
      return strerror(e);
    }
    this.fd = fd;
    try {
      this.negotiate();
      return undefined;
    } catch (e) {
      this.drop();
      return e instanceof Error ? e.message : String(e);
    }
  }

  private negotiate(): void {
    const head = this.recv(16);
    if (head.readBigUInt64BE(0) !== NBD_MAGIC) throw new Error('Bad magic received');
    const magic = head.readBigUInt64BE(8);
    if (magic === NBD_OLDSTYLE_MAGIC) {
      // Oldstyle: size (u64), flags (u32: transmission flags in the low 16 bits), 124 zeros.
      const rest = this.recv(8 + 4 + 124);
      this.exportSize = Number(rest.readBigUInt64BE(0));
      this.flags = rest.readUInt32BE(8) & 0xffff;
      return;
    }
    if (magic !== NBD_OPTS_MAGIC) throw new Error('Bad server magic received');
    const serverFlags = this.recv(2).readUInt16BE(0);
    const clientFlags = serverFlags & (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    const name = Buffer.from(this.exportName);
    const opt = Buffer.alloc(4 + 8 + 4 + 4);
    opt.writeUInt32BE(clientFlags, 0);
    opt.writeBigUInt64BE(NBD_OPTS_MAGIC, 4);
    opt.writeUInt32BE(NBD_OPT_EXPORT_NAME, 12);
    opt.writeUInt32BE(name.length, 16);
    this.send(Buffer.concat([opt, name]));
    // NBD_OPT_EXPORT_NAME's answer: size (u64), transmission flags (u16), 124 zeros unless NO_ZEROES.
    const ans = this.recv(10 + (clientFlags & NBD_FLAG_NO_ZEROES ? 0 : 124));
    this.exportSize = Number(ans.readBigUInt64BE(0));
    this.flags = ans.readUInt16BE(8);
  }

  private send(b: Buffer | Uint8Array): void {
    let done = 0;
    try {
      while (done < b.length) done += fs.writeSync(this.fd, b, done, b.length - done);
    } catch {
      throw new Disconnected();
    }
  }

  private recv(n: number, into?: Uint8Array): Buffer {
    const b = into ? Buffer.from(into.buffer, into.byteOffset, into.byteLength) : Buffer.alloc(n);
    let done = 0;
    while (done < n) {
      let k: number;
      try {
        k = fs.readSync(this.fd, b, done, n - done, null);
      } catch {
        throw new Disconnected();
      }
      if (k === 0) throw new Disconnected();
      done += k;
    }
    return b;
  }

  private drop(): void {
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already gone
      }
    }
    this.fd = -1;
  }

  /**
   * One request and its simple reply; on a broken connection, a new one within reconnect-delay
   * and the request again (QEMU's nbd_co_do_establish_connection / request retry).
   */
  private request(type: number, offset: number, length: number, data?: Uint8Array, out?: Uint8Array): void {
    const op = type === CMD_READ ? 'read' : type === CMD_WRITE ? 'write' : 'flush';
    let since: number | undefined;
    for (;;) {
      try {
        if (this.fd < 0) throw new Disconnected();
        const h = this.handle++;
        const req = Buffer.alloc(28);
        req.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
        req.writeUInt32BE(type, 4); // command flags (upper 16 bits) none
        req.writeBigUInt64BE(h, 8);
        req.writeBigUInt64BE(BigInt(offset), 16);
        req.writeUInt32BE(length, 24);
        this.send(req);
        if (data) this.send(data);
        const rep = this.recv(16);
        if (rep.readUInt32BE(0) !== NBD_SIMPLE_REPLY_MAGIC || rep.readBigUInt64BE(8) !== h)
          throw new Disconnected();
        const errno = rep.readUInt32BE(4);
        if (out) this.recv(out.length, out);
        if (errno !== 0) {
          throw new IoError(
            `EIO_${op.toUpperCase() as Uppercase<string>}`,
            `${op} failed on '${this.name}' at offset ${offset}: ${strerror(errno)}`,
            { path: this.name, op, offset },
          );
        }
        return;
      } catch (e) {
        if (!(e instanceof Disconnected)) throw e;
        this.drop();
        since ??= Date.now();
        // Reconnect attempts until the delay is over (QEMU tries again every second or so).
        while (this.fd < 0 && Date.now() - since < this.reconnectDelay * 1000) {
          if (this.connect() !== undefined) sleep(100);
        }
        if (this.fd < 0) {
          throw new IoError(
            `EIO_${op.toUpperCase() as Uppercase<string>}`,
            `${op} failed on '${this.name}' at offset ${offset}: ${strerror(5)}`,
            { path: this.name, op, offset },
          );
        }
      }
    }
  }

  read(buf: Uint8Array, offset: number): void {
    for (let done = 0; done < buf.length;) {
      const n = Math.min(MAX_REQUEST, buf.length - done);
      this.request(CMD_READ, offset + done, n, undefined, buf.subarray(done, done + n));
      done += n;
    }
  }

  write(buf: Uint8Array, offset: number): void {
    for (let done = 0; done < buf.length;) {
      const n = Math.min(MAX_REQUEST, buf.length - done);
      this.request(CMD_WRITE, offset + done, n, buf.subarray(done, done + n));
      done += n;
    }
  }

  size(): number {
    return this.exportSize;
  }

  truncate(length: number): void {
    throw new IoError('EIO_TRUNCATE', `Cannot resize NBD nodes`, { path: this.name, op: 'truncate', length });
  }

  flush(): void {
    // Only a server that offers flushes gets them (NBD_FLAG_SEND_FLUSH).
    if (this.flags & NBD_FLAG_SEND_FLUSH && this.fd >= 0) this.request(CMD_FLUSH, 0, 0);
  }

  close(): void {
    if (this.fd >= 0) {
      // NBD_CMD_DISC: no reply; a server already gone is no error.
      const req = Buffer.alloc(28);
      req.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
      req.writeUInt32BE(CMD_DISC, 4);
      try {
        this.send(req);
      } catch {
        // gone
      }
    }
    this.drop();
  }
}
