/**
 * Any program speaking qemu-io's command language on stdin, one long-lived process per image for
 * the whole sequence (as a VM keeps its disk open): `open`/`close` inside that process, snapshots
 * through qemu-img while it is closed. qemu-io itself is one instance:
 *
 *   new StdinProtocolImplementation({ name: 'qemu-io', argv: ['qemu-io'], … })
 *
 * Another program plugs in the same way with its own argv (it must print a prompt when it waits
 * for a command, and report failures as qemu-io does).
 */
import type {
  Capabilities,
  ImageHandle,
  ImplementationUnderTest,
  ReadMismatch,
  ScriptTool,
} from './adapter.ts';
import { ImplementationError } from './adapter.ts';
import { CommandSession } from './command-session.ts';
import { decodeDump } from '../qemu/hex-dump.ts';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import type { AioHold, AioWrite, WriteSource } from '../steps.ts';
import { qemuImgCommit, qemuImgRebase } from '../qemu/qemu-backing.ts';
import type { BackingFormat } from '../layout.ts';
import { stampFileName } from '../model/stamp.ts';
import { readerPieces, firstDifference } from '../model/compare-bytes.ts';
import { qemuObjectArgs, qemuOpenOptions, type ImageLayout } from '../layout.ts';
import { qemuImgAmend, qemuImgCreate, qemuImgSnapshot, type SnapshotOp } from '../qemu/qemu-img.ts';

export interface StdinProtocolOptions {
  name: string;
  argv: readonly string[];
  prompt?: string;
  /** The command opening an image (default: `open -o driver=qcow2 PATH`, plus the key of an encrypted one). */
  openCommand?: (path: string, layout: ImageLayout) => string;
  /**
   * The command opening it with QEMU's blkdebug driver between qcow2 and the file, for aio batches
   * that hold a request at an event (default: `debugOpenCommand` when `openCommand` is the default;
   * none for another program, whose batches then run without holds).
   */
  debugOpenCommand?: (path: string, layout: ImageLayout) => string;
  capabilities: Capabilities;
  scriptTool: ScriptTool;
}

/** Largest single `read -P` (qemu-io allocates a buffer of the read's length). */
const MAX_READ = 16 << 20;
/** Largest single `read -v` (its dump is five bytes of text per byte). */
const DUMP_MAX = 1 << 20;

/** The bytes of qemu-io's `read -v` dump (qemu/hex-dump.ts; the session decodes replies itself). */
export function parseDump(output: string): Uint8Array {
  return decodeDump(Buffer.from(output, 'latin1')).data;
}

export class StdinProtocolImplementation implements ImplementationUnderTest {
  readonly name: string;
  readonly scriptTool: ScriptTool;
  private readonly opts: StdinProtocolOptions;

  constructor(opts: StdinProtocolOptions) {
    this.name = opts.name;
    this.scriptTool = opts.scriptTool;
    this.opts = opts;
  }

  async capabilities(): Promise<Capabilities> {
    return this.opts.capabilities;
  }

  async create(path: string, layout: ImageLayout): Promise<ImageHandle> {
    await qemuImgCreate(path, layout);
    // (the secret object for an encrypted image goes on the command line, as for qemu-io)
    const argv = [...this.opts.argv, ...qemuObjectArgs(layout)];
    const session = await SESSIONS.take(argv, this.opts.prompt);
    const openCommand = this.opts.openCommand ?? defaultOpenCommand;
    const debugOpen = this.opts.debugOpenCommand ?? (this.opts.openCommand ? undefined : debugOpenCommand);
    const handle = new StdinProtocolHandle(
      path,
      session,
      (p) => openCommand(p, layout),
      layout,
      debugOpen && ((p) => debugOpen(p, layout)),
    );
    handle.release = (s) => SESSIONS.give(s, argv, this.opts.prompt);
    await handle.open();
    return handle;
  }

  /** Quit the sessions parked for reuse. */
  async shutdown(): Promise<void> {
    await SESSIONS.drain();
  }
}

/**
 * Sessions kept for the next image: one process serves image after image (`close`, then the next
 * `open`), as one VM process opens disk after disk, saving a spawn per sequence. Only sessions
 * with nothing outstanding are parked, a few per command line; parked ones do not keep Node
 * running.
 */
class SessionPool {
  private readonly idle = new Map<string, CommandSession[]>();
  private static readonly MAX_IDLE = 2;

  private key(argv: readonly string[], prompt: string | undefined): string {
    return JSON.stringify([argv, prompt ?? null]);
  }

  async take(argv: readonly string[], prompt: string | undefined): Promise<CommandSession> {
    const list = this.idle.get(this.key(argv, prompt));
    for (let s = list?.pop(); s; s = list?.pop()) {
      if (!s.idle) continue;
      s.setReferenced(true);
      return s;
    }
    return CommandSession.start({ argv, prompt });
  }

  async give(session: CommandSession, argv: readonly string[], prompt: string | undefined): Promise<void> {
    const key = this.key(argv, prompt);
    const list = this.idle.get(key) ?? [];
    if (!session.idle || list.length >= SessionPool.MAX_IDLE) return session.quit();
    session.setReferenced(false);
    list.push(session);
    this.idle.set(key, list);
  }

  async drain(): Promise<void> {
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    await Promise.all(all.map((s) => s.quit()));
  }
}

const SESSIONS = new SessionPool();

/**
 * `open -t unsafe -o driver=qcow2[,encrypt.key-secret=ID] PATH`. Write-back, as a VM's disk
 * with its write cache enabled (QEMU's default for `-drive`): qemu-io's own default is
 * write-through, which flushes (fdatasync, and every dirty L2 table and refcount block) after each
 * write, so its metadata caches would never hold a dirty entry for eviction to write back, and
 * each write would cost a sync. The sequence's own `flush` steps flush.
 */
export function defaultOpenCommand(path: string, layout: ImageLayout): string {
  return `open -t unsafe -o ${qemuOpenOptions(layout)} ${path}`;
}

/**
 * The same through blkdebug (`file.driver=blkdebug,file.image.filename=PATH`): without rules it
 * passes every request through; `break EVENT TAG` then holds the first request to reach a named
 * write point of qcow2 until `resume`/`remove_break` (QEMU's iotests hold requests this way).
 */
export function debugOpenCommand(path: string, layout: ImageLayout): string {
  return `open -t unsafe -o ${qemuOpenOptions(layout)},file.driver=blkdebug,file.image.filename=${path}`;
}

/** blkdebug's own reports of a held request (`blkdebug: Suspended request 'TAG'`, `… Resuming …`). */
const BLKDEBUG_LINE = /^blkdebug: (Suspended|Resuming) request .*$/gm;
/** What `remove_break` says when the request it released had already used up its one-shot rule. */
const REMOVE_BREAK_LINE = /^Could not remove breakpoint \S+: No such file or directory$/gm;

export class StdinProtocolHandle implements ImageHandle {
  readonly path: string;
  /** One process reading commands from a pipe, answering in order (command-session.ts). */
  readonly pipelined = true;
  private open_ = false;
  private readonly session: CommandSession;
  private readonly openCommand: (path: string) => string;
  /** For qemu-img snapshot: how to name the image (encrypted: --image-opts). */
  private readonly layout: ImageLayout | undefined;
  /** Opening through blkdebug (aio batches with a hold), when the program has it. */
  private readonly debugOpenCommand: ((path: string) => string) | undefined;
  /** Whether the image is open through blkdebug now (from a held batch until the next close). */
  private debugOpen = false;
  /** Held aio batches, and how many of them really held a request (for figures and tests). */
  static readonly holds = {
    batches: 0,
    held: 0,
    byEvent: new Map<string, { batches: number; held: number }>(),
  };

  constructor(
    path: string,
    session: CommandSession,
    openCommand: (path: string) => string,
    layout?: ImageLayout,
    debugOpenCommand?: (path: string) => string,
  ) {
    this.path = path;
    this.session = session;
    this.openCommand = openCommand;
    this.layout = layout;
    this.debugOpenCommand = debugOpenCommand;
  }

  get isOpen(): boolean {
    return this.open_;
  }

  async open(): Promise<void> {
    if (this.open_) return;
    await this.must(this.openCommand(this.path));
    this.open_ = true;
  }

  async close(): Promise<void> {
    if (!this.open_) return;
    this.open_ = false;
    this.debugOpen = false;
    await this.must('close');
  }

  /** Set by a pooling implementation: where the session goes when the image is done with. */
  release: ((session: CommandSession) => Promise<void>) | undefined;

  async dispose(): Promise<void> {
    const wasOpen = this.open_;
    this.open_ = false;
    this.debugOpen = false;
    // (a session still waiting for a reply, or whose close failed, is not handed on)
    if (this.release && this.session.idle) {
      const closed = wasOpen ? await this.session.run('close') : undefined;
      if (!closed?.failed && this.session.idle) return this.release(this.session);
    }
    await this.session.quit();
  }

  async write(offset: number, data: Uint8Array, source: WriteSource): Promise<void> {
    await this.writeWith('', offset, data, source);
  }

  /** `write [-c] -P p` or, for stamped data, `write [-c] -s FILE` with the file next to the image. */
  private async writeWith(
    flags: string,
    offset: number,
    data: Uint8Array,
    source: WriteSource,
  ): Promise<void> {
    if (source.stamp === undefined) {
      await this.must(`write -q${flags} -P ${source.pattern} ${offset} ${data.length}`);
      return;
    }
    const file = nodePath.join(nodePath.dirname(this.path), stampFileName(source.stamp));
    fs.writeFileSync(file, data);
    try {
      await this.must(`write -q${flags} -s ${file} ${offset} ${data.length}`);
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  async writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    await this.must(`write -q -z${unmap ? ' -u' : ''} ${offset} ${length}`);
  }

  async writeCompressed(offset: number, data: Uint8Array, source: WriteSource): Promise<void> {
    await this.writeWith(' -c', offset, data, source);
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.must(`discard -q ${offset} ${length}`);
  }

  /**
   * Pieces of one repeated byte are checked by qemu-io itself (`read -P`); mixed pieces are dumped
   * (`read -v`) and compared here, cut at sectors (`readerPieces`: a dump is ~5 bytes of text a
   * byte, printed one printf at a time, the bulk of qemu-io's CPU on the harness's stream). A
   * failed `read -P` is dumped too, to see what is there.
   */
  async verify(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined> {
    for (const piece of readerPieces(expected)) {
      for (let from = piece.from; from < piece.to; from += MAX_READ) {
        const to = Math.min(piece.to, from + MAX_READ);
        if (piece.uniform !== undefined) {
          const out = await this.session.run(`read -q -P ${piece.uniform} ${offset + from} ${to - from}`);
          if (!out.failed) continue;
          if (!/Pattern verification failed/.test(out.output))
            throw new ImplementationError(out.command, out.output.trim());
        }
        const want = expected.subarray(from, to);
        const got = await this.read(offset + from, Math.min(to - from, DUMP_MAX));
        const at = firstDifference(got, want.subarray(0, got.length));
        if (at >= 0) return { offset: offset + from + at, observed: got, observedAt: offset + from };
        if (got.length < want.length) {
          const rest = await this.verify(offset + from + got.length, want.subarray(got.length));
          if (rest) return rest;
        }
      }
    }
    return undefined;
  }

  /** The image's bytes through `read -v` (a hex dump, parsed), `DUMP_MAX` bytes per command. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    for (let from = 0; from < length; from += DUMP_MAX) {
      const len = Math.min(DUMP_MAX, length - from);
      const r = await this.session.runDump(`read -v ${offset + from} ${len}`);
      if (r.failed) throw new ImplementationError(r.command, r.output.trim().slice(0, 2000));
      const bytes = r.data;
      if (bytes.length !== len)
        throw new ImplementationError(r.command, `dump has ${bytes.length} bytes, not ${len}`);
      out.set(bytes, from);
    }
    return out;
  }

  async flush(): Promise<void> {
    await this.must('flush');
  }

  async resize(newSize: number): Promise<void> {
    await this.must(`truncate ${newSize}`);
  }

  snapshotCreate(name: string): Promise<void> {
    return this.snapshot('create', name);
  }
  snapshotApply(name: string): Promise<void> {
    return this.snapshot('apply', name);
  }
  snapshotDelete(name: string): Promise<void> {
    return this.snapshot('delete', name);
  }

  /**
   * `aio_write -q -P …` per request, then `aio_flush`, all sent at once (qemu-io submits each
   * request and reads the next line while it is in flight). With a hold, the image is first
   * reopened through blkdebug (once; it stays so until the next close) and the batch is
   *
   *   break EVENT hold; aio_write …; …; sleep 1; remove_break hold; aio_flush
   *
   * so that the first request to reach EVENT waits there, half done, while the others are
   * submitted and run; `remove_break` releases it (or drops the rule when no request reached
   * EVENT: a hold that cannot hang, unlike `wait_break`). The 1 ms of main loop before it lets a
   * request whose metadata had to be read first reach EVENT (measured, 40 sequences: held at
   * write_aio 10 of 10 batches with it, 8 of 10 without; the other events are reached only when
   * the image's state calls for them: cluster_alloc 6/9, refblock_alloc 2/5, l2_alloc_write 1/7). An aio_write's own failure is printed when it completes,
   * in whichever reply is being collected then: the batch's replies are judged together.
   */
  async aioWriteBatch(writes: readonly AioWrite[], hold?: AioHold): Promise<void> {
    const held = hold !== undefined && this.debugOpenCommand !== undefined;
    if (held && !this.debugOpen) {
      await this.close();
      await this.must(this.debugOpenCommand!(this.path));
      this.open_ = true;
      this.debugOpen = true;
    }
    const commands = [
      ...(held ? [`break ${hold} hold`] : []),
      ...writes.map((w) => `aio_write -q -P ${w.pattern} ${w.offset} ${w.length}`),
      ...(held ? ['sleep 1', 'remove_break hold'] : []),
      'aio_flush',
    ];
    const outcomes = await Promise.all(commands.map((c) => this.session.run(c)));
    const said = outcomes.map((o) => o.output).join('');
    if (held) {
      StdinProtocolHandle.holds.batches++;
      const e = StdinProtocolHandle.holds.byEvent.get(hold) ?? { batches: 0, held: 0 };
      e.batches++;
      StdinProtocolHandle.holds.byEvent.set(hold, e);
      if (/^blkdebug: Suspended request/m.test(said)) {
        StdinProtocolHandle.holds.held++;
        e.held++;
      }
    }
    const rest = said.replace(BLKDEBUG_LINE, '').replace(REMOVE_BREAK_LINE, '');
    if (outcomes.some((o) => o.failed) && /^[\w.-]+: |failed|not found/im.test(rest))
      throw new ImplementationError(commands.join('; '), rest.trim());
  }

  async rebase(name: string | null, format: BackingFormat | undefined, unsafe: boolean): Promise<void> {
    await this.withClosed(`qemu-img rebase${unsafe ? ' -u' : ''} -b ${name ?? "''"}`, () =>
      qemuImgRebase(this.path, name, format, unsafe, this.layout ?? {}),
    );
  }

  async commit(): Promise<void> {
    await this.withClosed('qemu-img commit', () => qemuImgCommit(this.path, this.layout ?? {}));
  }

  private async withClosed(
    what: string,
    run: () => Promise<{ exitCode: number; stdout: string; stderr: string }>,
  ): Promise<void> {
    const wasOpen = this.open_;
    await this.close();
    const r = await run();
    if (wasOpen) await this.open();
    if (r.exitCode !== 0) throw new ImplementationError(what, `${r.stdout}${r.stderr}`.trim());
  }

  async vmStateWrite(offset: number, data: Uint8Array, source: WriteSource): Promise<void> {
    await this.writeWith(' -b', offset, data, source);
  }

  /** `read -b -P` for pieces of one byte, `read -b -v` dumps for the rest. */
  async vmStateVerify(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined> {
    for (const piece of readerPieces(expected)) {
      const at = offset + piece.from;
      const len = piece.to - piece.from;
      if (piece.uniform !== undefined) {
        const out = await this.session.run(`read -q -b -P ${piece.uniform} ${at} ${len}`);
        if (!out.failed) continue;
        if (!/Pattern verification failed/.test(out.output))
          throw new ImplementationError(out.command, out.output.trim());
      }
      const r = await this.session.runDump(`read -b -v ${at} ${len}`);
      if (r.failed) throw new ImplementationError(r.command, r.output.trim().slice(0, 2000));
      const got = r.data;
      const diff = firstDifference(got, expected.subarray(piece.from, piece.to));
      if (diff >= 0) return { offset: at + diff, observed: got, observedAt: at };
    }
    return undefined;
  }

  async amend(option: string): Promise<void> {
    const wasOpen = this.open_;
    await this.close();
    const r = await qemuImgAmend(this.path, option, this.layout);
    if (wasOpen) await this.open();
    if (r.exitCode !== 0) throw new ImplementationError(`qemu-img amend -o ${option}`, r.stderr.trim());
  }

  private async snapshot(op: SnapshotOp, name: string): Promise<void> {
    const wasOpen = this.open_;
    await this.close();
    const r = await qemuImgSnapshot(this.path, op, name, this.layout);
    if (wasOpen) await this.open();
    if (r.exitCode !== 0) throw new ImplementationError(`qemu-img snapshot ${op} ${name}`, r.stderr.trim());
  }

  private async must(command: string): Promise<void> {
    const out = await this.session.run(command);
    if (out.failed) throw new ImplementationError(command, out.output.trim());
  }
}
