/**
 * A long-lived process speaking qemu-io's command language on stdin. qemu-io prints its prompt
 * ("qemu-io> ", flushed) whenever it waits for the next command, also when stdin is a pipe, so
 * the prompt is the completion marker: everything printed between two prompts belongs to one
 * command. stderr is merged into stdout by the shell (`2>&1`) so error messages stay in order.
 * A command failed when its output has a line starting with "<program>: " (error_report) or
 * containing "failed" / "not found" (qemu-io's command errors).
 *
 * Commands are pipelined: `run` writes the command line at once and queues its reply; the replies
 * are taken in order, one per prompt (qemu-io reads stdin line by line and runs each command in
 * turn). Many commands can be in flight, so a sequence of writes costs qemu-io's own time rather
 * than one round trip (and one scheduling delay on a loaded machine) each.
 *
 * qemu-io 7.2 reads a pipe with stdio's fgets but waits for the file descriptor to be readable
 * before each command: when one read() took several lines into stdio's buffer, the lines after the
 * first wait for another byte to arrive. So while replies are awaited and none comes, the session
 * "kicks": it sends one space, the first byte of the next line (qemu-io skips leading blanks), and
 * qemu-io works through every buffered line, then blocks in the middle of the next line after
 * printing the last prompt. A line of many kicks is ended as a blank line, whose empty reply
 * (one more prompt) is taken and dropped in its place.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export interface CommandOutcome {
  command: string;
  output: string;
  failed: boolean;
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
const KICK_MAX_MS = 64;
/** Kicks on one line before it is ended as a blank line (qemu-io reads lines of up to 1 KiB). */
const KICKS_PER_LINE = 200;

export class CommandSession {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly prompt: string;
  private readonly failurePatterns: readonly RegExp[];
  private buffer = '';
  /** Output not yet appended to `buffer`, and whether a prompt may be in it. */
  private parts: string[] = [];
  private promptPending = false;
  /** Where the next prompt search starts (the buffer before it holds no prompt). */
  private scanned = 0;
  /** Replies awaited, in the order their commands were sent. */
  private readonly waiters: ((text: string) => void)[] = [];
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
    this.prompt = opts.prompt ?? 'qemu-io> ';
    this.failurePatterns = opts.failurePatterns ?? DEFAULT_FAILURE;
    this.description = opts.argv.join(' ');
    this.child = spawn('sh', ['-c', 'exec "$0" "$@" 2>&1', ...opts.argv], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout.setEncoding('latin1');
    this.child.stdout.on('data', (text: string) => {
      // Large outputs (hex dumps) arrive in many pieces: keep them apart until a prompt may be
      // among them (appending to one string and searching it again each time is quadratic).
      const tail = this.parts.length > 0 ? this.parts[this.parts.length - 1] : this.buffer;
      this.parts.push(text);
      if (`${tail.slice(-this.prompt.length)}${text}`.includes(this.prompt)) this.promptPending = true;
      this.progress = true;
      this.kickDelayMs = KICK_FIRST_MS;
      this.deliver();
    });
    this.child.stderr.on('data', () => {});
    this.child.stdin.on('error', () => {});
    this.child.on('exit', (code, signal) => {
      this.exited = { code, signal };
      this.deliver();
      for (const w of this.exitWaiters) w();
    });
  }

  static async start(opts: CommandSessionOptions): Promise<CommandSession> {
    const session = new CommandSession(opts);
    await session.nextPrompt();
    return session;
  }

  /** Send one command line now; its outcome is the output up to its prompt (in send order). */
  async run(command: string): Promise<CommandOutcome> {
    if (this.exited) throw new Error(`${this.description} exited (${this.exitText()}) before '${command}'`);
    const reply = this.nextPrompt();
    this.child.stdin.write(`${command}\n`);
    this.kicksOnLine = 0;
    this.armKick();
    const output = await reply;
    // (hex dump lines of `read -v`, `ADDR:  xx …`, are data, not messages)
    const messages = output.includes(':  ') ? output.replace(/^[0-9a-f]{8,}: {2}.*$/gm, '') : output;
    const failed = this.exited !== undefined || this.failurePatterns.some((p) => p.test(messages));
    return { command, output, failed };
  }

  /** While replies are awaited: kick when none came for a while (see the top of the file). */
  private armKick(): void {
    if (this.kickTimer || this.exited) return;
    this.progress = false;
    this.kickTimer = setTimeout(() => {
      this.kickTimer = undefined;
      if (this.waiters.length === 0 || this.exited) return;
      if (!this.progress) {
        if (this.kicksOnLine < KICKS_PER_LINE) {
          this.child.stdin.write(' ');
          this.kicksOnLine++;
        } else {
          this.waiters.push(() => {}); // the blank line's own prompt
          this.child.stdin.write('\n');
          this.kicksOnLine = 0;
        }
        this.kickDelayMs = Math.min(KICK_MAX_MS, this.kickDelayMs * 2);
      }
      this.armKick();
    }, this.kickDelayMs);
  }

  async quit(): Promise<void> {
    if (!this.exited) {
      this.child.stdin.end('quit\n');
      await new Promise<void>((resolve) => {
        if (this.exited) resolve();
        else this.exitWaiters.push(resolve);
      });
    }
  }

  /** The text up to the next prompt not yet claimed (queued behind the replies awaited before). */
  private nextPrompt(): Promise<string> {
    return new Promise((resolve, reject) => {
      const waiter = (text: string): void => resolve(text);
      this.waiters.push(waiter);
      this.deliver();
      if (this.exited && this.waiters.includes(waiter)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(
          new Error(
            `${this.description} exited (${this.exitText()}); output: ${(this.buffer + this.parts.join('')).slice(-2000)}`,
          ),
        );
      }
    });
  }

  private deliver(): void {
    while (this.waiters.length > 0) {
      if (this.parts.length > 0 && (this.promptPending || this.exited)) {
        this.buffer += this.parts.join('');
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
          this.buffer = '';
          waiter(`${text}\n<${this.description} exited: ${this.exitText()}>`);
          continue;
        }
        return;
      }
      const text = this.buffer.slice(0, at);
      this.buffer = this.buffer.slice(at + this.prompt.length);
      this.scanned = 0;
      this.waiters.shift()!(text);
    }
  }

  private exitText(): string {
    return this.exited ? `code ${String(this.exited.code)}, signal ${String(this.exited.signal)}` : 'running';
  }
}
