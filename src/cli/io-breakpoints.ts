/**
 * qemu-io's blkdebug commands (`break`, `remove_break`, `resume`, `wait_break`; qemu-io-cmds.c)
 * and the aio requests they keep in flight. A request that meets a breakpoint is suspended
 * (io/blkdebug-breakpoints.ts holds what it still has to do to the device) and completes — its
 * "wrote …" line, its callback — only when it is resumed. Later aio requests on the same guest
 * clusters wait behind it, as QEMU's qcow2 request dependencies (handle_dependencies: a request
 * touching a cluster that an earlier one is allocating waits for it) make them; requests elsewhere
 * run and complete at once.
 *
 * Where qemu-io would wait forever (`wait_break` for a tag no request can reach any more: every
 * request here runs to its breakpoint at submission; `aio_flush` or a synchronous request while a
 * request is suspended), ours does not hang: wait_break fails with a message, the others go on.
 */
import type { GuestDisk } from '../api.ts';
import { BlkdebugDevice } from '../io/blkdebug.ts';
import { strerror } from '../io/errno.ts';
import type { Io } from './stdio.ts';
import { CmdFailed, cvtnum, type Cmd, type Session } from './io-session.ts';
import { isQcow2 } from './common.ts';

const ENOENT = 2;
const ENOTSUP = 95;

/** bdrv_find_debug_node: the first blkdebug node down the image's chain of primary children. */
export function debugNode(disk: GuestDisk | undefined): BlkdebugDevice | undefined {
  const seen = new Set<unknown>();
  let node: unknown = disk;
  while (node && typeof node === 'object' && !seen.has(node)) {
    if (node instanceof BlkdebugDevice) return node;
    seen.add(node);
    const o = node as { device?: unknown; inner?: unknown; disk?: unknown };
    node = o.device ?? o.inner ?? o.disk;
  }
  return undefined;
}

/** An aio request: submitted, suspended or waiting for an earlier one on its clusters. */
interface Request {
  first: number;
  last: number;
  /** What it printed (held until it completes), in order, with the stream it went to. */
  output: Array<[keyof Io, string]>;
  /** Runs the request (set while it waits for an earlier one). */
  start: (() => void) | undefined;
}

const inFlight = new WeakMap<GuestDisk, Request[]>();

function requestsOf(disk: GuestDisk): Request[] {
  let r = inFlight.get(disk);
  if (!r) inFlight.set(disk, (r = []));
  return r;
}

/**
 * An aio request (`aio_read`/`aio_write`): `run` submits it as the command always does; with a
 * blkdebug node that has breakpoints or suspended requests, its completion may wait.
 */
export function aioRequest(s: Session, operands: string[], run: () => void): void {
  const disk = s.disk!;
  const dev = debugNode(disk);
  const queue = requestsOf(disk);
  if (!dev || (!dev.breakpoints.any && queue.length === 0)) {
    run();
    return;
  }
  // The guest clusters the request touches (its offset and the vector's lengths; a malformed
  // request fails as it always does, at once).
  let first: number;
  let last: number;
  try {
    const off = cvtnum(s, operands[0]!);
    const len = operands.slice(1).reduce((n, a) => n + cvtnum(s, a), 0);
    const cs = isQcow2(disk) ? disk.clusterSize : 1;
    first = Math.floor(off / cs);
    last = Math.floor((off + Math.max(len, 1) - 1) / cs);
  } catch (e) {
    if (e instanceof CmdFailed) throw e;
    run();
    return;
  }
  const req: Request = { first, last, output: [], start: undefined };
  const blocked = queue.some((r) => r.first <= last && first <= r.last);
  queue.push(req);
  if (blocked) req.start = () => execute(s, disk, dev, req, run);
  else execute(s, disk, dev, req, run);
}

/** Runs a request with its output held; it completes now unless a breakpoint suspended it. */
function execute(s: Session, disk: GuestDisk, dev: BlkdebugDevice, req: Request, run: () => void): void {
  req.start = undefined;
  const io = s.io;
  s.io = { out: (t) => req.output.push(['out', t]), err: (t) => req.output.push(['err', t]) };
  // "Suspended request" goes out now, not with the request's own output.
  dev.breakpoints.print = (t) => io.out(t);
  try {
    run();
  } catch (e) {
    if (!(e instanceof CmdFailed)) s.io.err(`${e instanceof Error ? e.message : String(e)}\n`);
  } finally {
    s.io = io;
  }
  const suspension = dev.breakpoints.take();
  if (suspension) suspension.onDone = (err) => complete(s, disk, req, err);
  else complete(s, disk, req);
}

/**
 * Completions of requests that `resume`/`remove_break` let go on: they come after the command's
 * own output, as QEMU's resumed coroutine still has I/O to wait for before it completes.
 */
let deferred: Array<() => void> | undefined;

function resuming(s: Session, act: () => boolean, failure: string): void {
  deferred = [];
  let ok: boolean;
  try {
    ok = act();
  } finally {
    const todo = deferred;
    deferred = undefined;
    if (!ok!) s.io.out(failure);
    for (const f of todo) f();
  }
  if (!ok) throw new CmdFailed();
}

/** The request is done: its output goes out, and the requests waiting for it may start. */
function complete(s: Session, disk: GuestDisk, req: Request, err?: unknown): void {
  if (deferred) {
    deferred.push(() => complete(s, disk, req, err));
    return;
  }
  if (err === undefined) for (const [k, t] of req.output) s.io[k](t);
  else s.io.out(`aio request failed: ${err instanceof Error ? err.message : String(err)}\n`);
  const queue = requestsOf(disk);
  queue.splice(queue.indexOf(req), 1);
  // In submission order, each waiting request whose clusters no earlier request holds starts.
  for (let i = 0; i < queue.length; i++) {
    const r = queue[i]!;
    if (!r.start) continue;
    const blocked = queue.slice(0, i).some((q) => q.first <= r.last && r.first <= q.last);
    if (!blocked) {
      r.start();
      // Starting may complete requests (and change the queue): look again from the start.
      i = -1;
    }
  }
}

function failed(s: Session, text: string): never {
  s.io.out(text);
  throw new CmdFailed();
}

export const BREAKPOINT_COMMANDS: Cmd[] = [
  {
    name: 'break',
    args: 'event tag',
    help: 'sets a breakpoint on event and tags the stopped request as tag',
    opts: '',
    min: 2,
    max: 2,
    needsFile: true,
    run(s, p) {
      const dev = debugNode(s.disk);
      if (!dev) failed(s, `Could not set breakpoint: ${strerror(ENOTSUP)}\n`);
      if (!dev.breakpoint(p.operands[0]!, p.operands[1]!))
        failed(s, `Could not set breakpoint: ${strerror(ENOENT)}\n`);
    },
  },
  {
    name: 'remove_break',
    args: 'tag',
    help: 'remove a breakpoint by tag',
    opts: '',
    min: 1,
    max: 1,
    needsFile: true,
    run(s, p) {
      const tag = p.operands[0]!;
      const dev = debugNode(s.disk);
      if (!dev) failed(s, `Could not remove breakpoint ${tag}: ${strerror(ENOTSUP)}\n`);
      dev.breakpoints.print = (t) => s.io.out(t);
      resuming(
        s,
        () => dev.breakpoints.remove(tag),
        `Could not remove breakpoint ${tag}: ${strerror(ENOENT)}\n`,
      );
    },
  },
  {
    name: 'resume',
    args: 'tag',
    help: 'resumes the request tagged as tag',
    opts: '',
    min: 1,
    max: 1,
    needsFile: true,
    run(s, p) {
      const dev = debugNode(s.disk);
      if (!dev) failed(s, `Could not resume request: ${strerror(ENOTSUP)}\n`);
      dev.breakpoints.print = (t) => s.io.out(t);
      const tag = p.operands[0]!;
      resuming(s, () => dev.breakpoints.resume(tag), `Could not resume request: ${strerror(ENOENT)}\n`);
    },
  },
  {
    name: 'wait_break',
    args: 'tag',
    help: 'waits for the suspension of a request',
    opts: '',
    min: 1,
    max: 1,
    needsFile: true,
    run(s, p) {
      const tag = p.operands[0]!;
      const dev = debugNode(s.disk);
      if (dev?.breakpoints.isSuspended(tag)) return;
      // qemu-io would poll forever: no request in flight here can still reach a breakpoint.
      failed(s, `wait_break: no request is suspended as '${tag}', and none in flight can be\n`);
    },
  },
];
