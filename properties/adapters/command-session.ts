/**
 * A long-lived process speaking qemu-io's command language on stdin. qemu-io prints its prompt
 * ("qemu-io> ", flushed) whenever it waits for the next command, also when stdin is a pipe, so
 * the prompt is the completion marker: everything printed between two prompts belongs to one
 * command. stderr is merged into stdout by the shell (`2>&1`) so error messages stay in order.
 * A command failed when its output has a line starting with "<program>: " (error_report) or
 * containing "failed" / "not found" (qemu-io's command errors).
 *
 * Commands are pipelined: `run` queues the command and its reply; the replies are taken in order,
 * one per prompt (qemu-io reads stdin line by line and runs each command in turn). Two lines are
 * kept in the pipe ahead of qemu-io (the one it runs and the next), so it never waits for this
 * process between commands: a sequence of writes costs qemu-io's own time rather than one round
 * trip (and one scheduling delay on a loaded machine) each. Two, not all: more lines would land in
 * stdio's buffer together (below).
 *
 * qemu-io 7.2 reads a pipe with stdio's fgets but waits for the file descriptor to be readable
 * before each command: when one read() took several lines into stdio's buffer, the lines after the
 * first wait for another byte to arrive. So while replies are awaited and none comes, the session
 * "kicks": it sends one space, the first byte of the next line (qemu-io skips leading blanks), and
 * qemu-io works through every buffered line, then blocks in the middle of the next line after
 * printing the last prompt. A line of many kicks is ended as a blank line, whose empty reply
 * (one more prompt) is taken and dropped in its place.
 *
 * Where it can (Linux), the session avoids all that: stdin is a SEQPACKET socket (seqpacket.ts),
 * one message per line, from which each read() takes exactly one line. Then SOCKET_WINDOW lines
 * go ahead of qemu-io and nothing is ever kicked; the pipe and its kicks remain the fallback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { decodeDump } from '../qemu/hex-dump.ts';
import { seqpacketPair } from './seqpacket.ts';

export interface CommandOutcome {
  command: string;
  /** What the command printed (for a dump read with `runDump`: its lines that are not dump lines). */
  output: string;
  failed: boolean;
}

/** A `read -v` command's outcome: the bytes its dump shows, decoded from the raw output. */
export interface DumpOutcome extends CommandOutcome {
  data: Uint8Array;
}

export interface CommandSessionOptions {
  argv: readonly string[];
  prompt?: string;
  /** Line prefixes and fragments that mark a failed command. */
  failurePatterns?: readonly RegExp[];
}

const DEFAULT_FAILURE: readonly RegExp[] = [/^[\w.-]+: /m, /failed/i, /not found/i];
/** The first kick after this long without a reply; then doubling, up to KICK_MAX_MS. */
const KICK_FIRST_MS = 1;
const KICK_MAX_MS = 4;
/** Kicks on one line before it is ended as a blank line (qemu-io reads lines of up to 1 KiB). */
const KICKS_PER_LINE = 200;
/** qemu-io's command buffer: fgets into MAXREADLINESZ (1024, qemu-io.c) bytes takes at most 1023, the newline included. */
const MAX_LINE = 1023;
/** Command lines sent ahead of their prompts through a pipe (the running one and the next). */
const WINDOW = 2;
/**
 * Through a SEQPACKET socket: more (each read takes one line), but fewer than the kernel queues
 * for a socket pair (net.unix.max_dgram_qlen, 10 by default; beyond it a send gets EAGAIN, which
 * is handled, but need not happen).
 */
const SOCKET_WINDOW = 8;

interface Refable {
  ref(): void;
  unref(): void;
}

/** Sees every command line a session sends (benchmarks replay the same stream alone). */
export type CommandTap = (session: CommandSession, command: string) => void;

export class CommandSession {
  /** When set, called with each command line before it is sent. */
  static tap: CommandTap | undefined;
  /** The program and arguments (without the image, which `open` names). */
  readonly argv: readonly string[];
  private readonly child: ChildProcess;
  private readonly stdout: Readable;
  /** stdin as a pipe (the fallback), or our end of a SEQPACKET socket (`socket`). */
  private readonly stdin: Writable | undefined;
  private socket: number | undefined;
  private readonly window: number;
  /** How command lines reach the process: a SEQPACKET socket, or a pipe with kicks. */
  readonly channel: 'seqpacket' | 'pipe';
  /** Kicks sent (spaces and blank lines; a SEQPACKET channel never needs one). */
  kicks = 0;
  private readonly prompt: Buffer;
  private readonly failurePatterns: readonly RegExp[];
  /** Output as bytes (dumps are decoded from them without a string in between). */
  private buffer: Buffer = Buffer.alloc(0);
  /** Output not yet appended to `buffer`, and whether a prompt may be in it. */
  private parts: Buffer[] = [];
  private promptPending = false;
  /** Where the next prompt search starts (the buffer before it holds no prompt). */
  private scanned = 0;
  /** Replies awaited for the lines sent, in the order sent. */
  private readonly waiters: ((reply: Buffer) => void)[] = [];
  /** Commands not sent yet (the window is full), with their reply's waiter. */
  private readonly unsent: { line: string; waiter: (reply: Buffer) => void }[] = [];
  /** Kicks (spaces) sent since the last newline. */
  private kicksOnLine = 0;
  private kickTimer: NodeJS.Timeout | undefined;
  /** Output arrived since the kick timer was set. */
  private progress = false;
  private kickDelayMs = KICK_FIRST_MS;
  private exited: { code: number | null; signal: string | null } | undefined;
  private exitWaiters: (() => void)[] = [];
  readonly description: string;

  private constructor(opts: CommandSessionOptions) {
    this.prompt = Buffer.from(opts.prompt ?? 'qemu-io> ', 'latin1');
    this.failurePatterns = opts.failurePatterns ?? DEFAULT_FAILURE;
    this.description = opts.argv.join(' ');
    this.argv = opts.argv;
    const pair = seqpacketPair();
    this.child = spawn('sh', ['-c', 'exec "$0" "$@" 2>&1', ...opts.argv], {
      stdio: [pair ? pair.theirs : 'pipe', 'pipe', 'pipe'],
    });
    if (pair) {
      fs.closeSync(pair.theirs);
      this.socket = pair.ours;
      this.window = SOCKET_WINDOW;
      this.channel = 'seqpacket';
    } else {
      this.stdin = this.child.stdin!;
      this.stdin.on('error', () => {});
      this.window = WINDOW;
      this.channel = 'pipe';
    }
    this.stdout = this.child.stdout!;
    this.stdout.on('data', (chunk: Buffer) => {
      // Large outputs (hex dumps) arrive in many pieces: keep them apart until a prompt may be
      // among them (appending to one buffer and searching it again each time is quadratic).
      const tail = this.parts.length > 0 ? this.parts[this.parts.length - 1] : this.buffer;
      this.parts.push(chunk);
      if (
        chunk.includes(this.prompt) ||
        Buffer.concat([tail.subarray(-this.prompt.length), chunk.subarray(0, this.prompt.length)]).includes(
          this.prompt,
        )
      )
        this.promptPending = true;
      this.progress = true;
      this.kickDelayMs = KICK_FIRST_MS;
      this.deliver();
    });
    this.child.stderr!.on('data', () => {});
    this.child.on('exit', (code, signal) => {
      this.exited = { code, signal };
      this.closeSocket();
      this.deliver();
      for (const w of this.exitWaiters) w();
    });
  }

  static async start(opts: CommandSessionOptions): Promise<CommandSession> {
    const session = new CommandSession(opts);
    await session.nextPrompt();
    return session;
  }

  /** Queue one command line; its outcome is the output up to its prompt (in queue order). */
  async run(command: string): Promise<CommandOutcome> {
    const output = (await this.reply(command)).toString('latin1');
    // (hex dump lines of `read -v`, `ADDR:  xx …`, are data, not messages)
    const messages = output.includes(':  ') ? output.replace(/^[0-9a-f]{8,}: {2}.*$/gm, '') : output;
    return { command, output, failed: this.failedBy(messages) };
  }

  /**
   * Queue a `read -v` command: its dump decoded from the bytes printed (qemu/hex-dump.ts), and
   * its other lines as the output, where a failure is looked for.
   */
  async runDump(command: string): Promise<DumpOutcome> {
    const { data, messages } = decodeDump(await this.reply(command));
    return { command, output: messages, failed: this.failedBy(messages), data };
  }

  private failedBy(messages: string): boolean {
    return this.exited !== undefined || this.failurePatterns.some((p) => p.test(messages));
  }

  /** Queue one command line; its reply is the raw output up to its prompt. */
  private reply(command: string): Promise<Buffer> {
    if (this.exited) throw new Error(`${this.description} exited (${this.exitText()}) before '${command}'`);
    // qemu-io reads at most MAX_LINE bytes a command (fgets); a longer line would be cut into
    // several commands through a pipe, and cut short through the socket: neither is the command
    if (command.length + 1 > MAX_LINE || command.includes('\n'))
      throw new Error(
        `command line too long for ${this.description} (${command.length} bytes): ${command.slice(0, 200)}`,
      );
    CommandSession.tap?.(this, command);
    const reply = new Promise<Buffer>((resolve) => {
      this.unsent.push({ line: `${command}\n`, waiter: resolve });
    });
    this.pump();
    return reply;
  }

  /** Send queued lines while fewer than the window are ahead of qemu-io. */
  private pump(): void {
    while (this.unsent.length > 0 && this.waiters.length < this.window) {
      if (this.exited) {
        // the process is gone: every queued command gets that as its output
        for (const u of this.unsent.splice(0))
          u.waiter(Buffer.from(`<${this.description} exited: ${this.exitText()}>`, 'latin1'));
        return;
      }
      const { line, waiter } = this.unsent[0];
      if (!this.send(line)) break; // (the socket's queue is full: sent again at the next reply)
      this.unsent.shift();
      this.waiters.push(waiter);
      this.kicksOnLine = 0;
    }
    if (this.waiters.length > 0 && this.stdin) this.armKick();
  }

  /** One line to qemu-io: false when the socket cannot take it now (EAGAIN). */
  private send(line: string): boolean {
    if (this.stdin) {
      this.stdin.write(line);
      return true;
    }
    try {
      // one write, one message: qemu-io's one read() takes this line and nothing else
      if (this.socket !== undefined) fs.writeSync(this.socket, line);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return false;
      return true; // (EPIPE and the like: the process is gone, which its exit reports)
    }
  }

  private closeSocket(): void {
    if (this.socket === undefined) return;
    const fd = this.socket;
    this.socket = undefined;
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
  }

  /** While replies are awaited: kick when none came for a while (see the top of the file). */
  private armKick(): void {
    if (this.kickTimer || this.exited) return;
    this.progress = false;
    this.kickTimer = setTimeout(() => {
      this.kickTimer = undefined;
      if (this.waiters.length === 0 || this.exited) return;
      if (!this.progress) {
        this.kicks++;
        if (this.kicksOnLine < KICKS_PER_LINE) {
          this.stdin?.write(' ');
          this.kicksOnLine++;
        } else {
          this.waiters.push(() => {}); // the blank line's own prompt
          this.stdin?.write('\n');
          this.kicksOnLine = 0;
        }
        this.kickDelayMs = Math.min(KICK_MAX_MS, this.kickDelayMs * 2);
      }
      this.armKick();
    }, this.kickDelayMs);
  }

  /** Alive, and every reply sent for has come (nothing of an earlier user can arrive later). */
  get idle(): boolean {
    return !this.exited && this.waiters.length === 0 && this.unsent.length === 0 && this.parts.length === 0;
  }

  /**
   * Whether this process keeps Node running (a session parked in a pool does not: when Node
   * exits, the pipe closes and qemu-io quits at end of input).
   */
  setReferenced(referenced: boolean): void {
    // (a child's pipes are sockets, with ref/unref, though typed as plain streams; stderr is
    // closed at once, the shell having sent it to stdout)
    if (this.exited) return;
    const pipes = [...(this.stdin ? [this.stdin] : []), this.stdout] as unknown as Refable[];
    for (const h of [this.child, ...pipes])
      if (referenced) h.ref();
      else h.unref();
  }

  async quit(): Promise<void> {
    if (!this.exited) {
      this.setReferenced(true); // (waiting for its exit keeps Node running)
      if (this.stdin) this.stdin.end('quit\n');
      else {
        this.send('quit\n'); // (a full queue drops it: closing our end is the end of input anyway)
        this.closeSocket();
      }
      await new Promise<void>((resolve) => {
        if (this.exited) resolve();
        else this.exitWaiters.push(resolve);
      });
    }
  }

  /** The text up to the next prompt not yet claimed (queued behind the replies awaited before). */
  private nextPrompt(): Promise<string> {
    return new Promise((resolve, reject) => {
      const waiter = (reply: Buffer): void => resolve(reply.toString('latin1'));
      this.waiters.push(waiter);
      this.deliver();
      if (this.exited && this.waiters.includes(waiter)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(
          new Error(
            `${this.description} exited (${this.exitText()}); output: ${Buffer.concat([
              this.buffer,
              ...this.parts,
            ])
              .toString('latin1')
              .slice(-2000)}`,
          ),
        );
      }
    });
  }

  private deliver(): void {
    while (this.waiters.length > 0) {
      if (this.parts.length > 0 && (this.promptPending || this.exited)) {
        this.buffer = Buffer.concat([this.buffer, ...this.parts]);
        this.parts = [];
        this.promptPending = false;
      }
      const at = this.buffer.indexOf(this.prompt, this.scanned);
      if (at < 0) {
        this.scanned = Math.max(0, this.buffer.length - this.prompt.length);
        if (this.exited) {
          // the process is gone: the first waiter gets what is left, the others nothing more
          const waiter = this.waiters.shift()!;
          const text = this.buffer;
          this.buffer = Buffer.alloc(0);
          waiter(
            Buffer.concat([
              text,
              Buffer.from(`\n<${this.description} exited: ${this.exitText()}>`, 'latin1'),
            ]),
          );
          continue;
        }
        break;
      }
      const text = this.buffer.subarray(0, at);
      this.buffer = this.buffer.subarray(at + this.prompt.length);
      this.scanned = 0;
      this.waiters.shift()!(text);
    }
    this.pump();
  }

  private exitText(): string {
    return this.exited ? `code ${String(this.exited.code)}, signal ${String(this.exited.signal)}` : 'running';
  }
}
