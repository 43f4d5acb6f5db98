/**
 * A command channel to a child's stdin that keeps line boundaries: an AF_UNIX SOCK_SEQPACKET
 * socket pair, one message per command line.
 *
 * Why: qemu-io reads its commands with stdio's fgets but first waits (in its main loop) for the
 * descriptor to be readable. On a pipe, one read() can take several lines into stdio's buffer;
 * the lines after the first then wait for another byte to arrive (command-session.ts "kicks" for
 * that). A SEQPACKET socket returns ONE message per read(): stdio's buffer never holds more than
 * the line being run, and the descriptor is readable exactly while more lines are queued, so
 * any number of lines may be sent ahead with no kick at all.
 *
 * Linux only, through koffi (the FFI the engine already uses for libc); undefined elsewhere, and
 * the session falls back to a pipe. Our end is non-blocking (a full queue gives EAGAIN, never a
 * blocked event loop); the child's end stays blocking (qemu-io's fgets would read EAGAIN as the
 * end of its input). Both are close-on-exec (no other child inherits our end and keeps the
 * channel open after we close it); spawn's dup2 onto fd 0 clears that flag on the child's copy.
 */
import * as fs from 'node:fs';
import { koffiModule } from '../../src/io/libc.ts';

/** Linux constants (<sys/socket.h>, <fcntl.h>, asm-generic/errno-base.h). */
const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

interface Calls {
  socketpair: (domain: number, type: number, protocol: number, sv: number[]) => number;
  fcntl: (fd: number, cmd: number, arg: number) => number;
}

let calls: Calls | null | undefined;

function load(): Calls | null {
  const koffi = process.platform === 'linux' ? koffiModule() : undefined;
  if (koffi === undefined) return null;
  try {
    const lib = koffi.load('libc.so.6');
    return {
      socketpair: lib.func('int socketpair(int, int, int, _Out_ int *sv)') as Calls['socketpair'],
      fcntl: lib.func('int fcntl(int fd, int cmd, int arg)') as Calls['fcntl'],
    };
  } catch {
    return null;
  }
}

/**
 * A new SEQPACKET pair: `ours` (non-blocking, to write lines into) and `theirs` (to give the
 * child as stdin, then close here). Undefined where sockets of that kind cannot be made.
 */
export function seqpacketPair(): { ours: number; theirs: number } | undefined {
  if (process.env.QCOW2_FUZZ_STDIN_PIPE) return undefined; // (the pipe path, for tests and comparison)
  if (calls === undefined) calls = load();
  if (calls === null) return undefined;
  const sv = [-1, -1];
  if (calls.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) !== 0) return undefined;
  const flags = calls.fcntl(sv[0], F_GETFL, 0);
  if (flags < 0 || calls.fcntl(sv[0], F_SETFL, flags | O_NONBLOCK) !== 0) {
    fs.closeSync(sv[0]);
    fs.closeSync(sv[1]);
    return undefined;
  }
  return { ours: sv[0], theirs: sv[1] };
}
