/**
 * A long-lived process speaking qemu-io's command language on stdin. qemu-io prints its prompt
 * ("qemu-io> ", flushed) whenever it waits for the next command, also when stdin is a pipe, so
 * the prompt is the completion marker: everything printed between two prompts belongs to one
 * command. stderr is merged into stdout by the shell (`2>&1`) so error messages stay in order.
 * A command failed when its output has a line starting with "<program>: " (error_report) or
 * containing "failed" / "not found" (qemu-io's command errors).
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
  private waiter: ((text: string) => void) | undefined;
  private exited: { code: number | null; signal: string | null } | undefined;
  private exitWaiters: (() => void)[] = [];
  private queue: Promise<unknown> = Promise.resolve();
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

  /** Run one command line and wait for the next prompt. */
  run(command: string): Promise<CommandOutcome> {
    const result = this.queue.then(async () => {
      if (this.exited) throw new Error(`${this.description} exited (${this.exitText()}) before '${command}'`);
      this.child.stdin.write(`${command}\n`);
      const output = await this.nextPrompt();
      // (hex dump lines of `read -v`, `ADDR:  xx …`, are data, not messages)
      const messages = output.includes(':  ') ? output.replace(/^[0-9a-f]{8,}: {2}.*$/gm, '') : output;
      const failed = this.exited !== undefined || this.failurePatterns.some((p) => p.test(messages));
      return { command, output, failed };
    });
    this.queue = result.catch(() => undefined);
    return result;
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

  private nextPrompt(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiter = (text) => resolve(text);
      this.deliver();
      if (this.exited && this.waiter) {
        this.waiter = undefined;
        reject(
          new Error(
            `${this.description} exited (${this.exitText()}); output: ${(this.buffer + this.parts.join('')).slice(-2000)}`,
          ),
        );
      }
    });
  }

  private deliver(): void {
    if (!this.waiter) return;
    if (this.parts.length > 0 && (this.promptPending || this.exited)) {
      this.buffer += this.parts.join('');
      this.parts = [];
      this.promptPending = false;
    }
    const at = this.buffer.indexOf(this.prompt, this.scanned);
    if (at < 0) {
      this.scanned = Math.max(0, this.buffer.length - this.prompt.length);
      if (this.exited) {
        const waiter = this.waiter;
        this.waiter = undefined;
        const text = this.buffer;
        this.buffer = '';
        waiter(`${text}\n<${this.description} exited: ${this.exitText()}>`);
      }
      return;
    }
    const text = this.buffer.slice(0, at);
    this.buffer = this.buffer.slice(at + this.prompt.length);
    this.scanned = 0;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter(text);
  }

  private exitText(): string {
    return this.exited ? `code ${String(this.exited.code)}, signal ${String(this.exited.signal)}` : 'running';
  }
}
