/**
 * `qemu-img check` for many crash-state images, fast: one long-lived bash per worker reads
 * requests on stdin and runs qemu-img for each (a process start from bash costs a fraction of one
 * from node). Every state is still checked by a real `qemu-img check` run of its own.
 *
 * Request line: `plain FILE` (`qemu-img check --output=json -f qcow2 FILE`) or `repair FILE`
 * (`check -r all`, for images with the dirty bit); the reply is the exit status, the output
 * (stdout and stderr) and a terminator line.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { QEMU_IMG } from '../qemu/qemu-img.ts';

const END = '@@qcow2-crash-check-end@@';

const LOOP = [
  'while IFS= read -r mode && IFS= read -r f; do',
  '  if [ "$mode" = repair ]; then out=$("$QIMG" check -r all --output=json -f qcow2 "$f" 2>&1); st=$?;',
  '  else out=$("$QIMG" check --output=json -f qcow2 "$f" 2>&1); st=$?; fi',
  `  printf '%s\\n%s\\n${END}\\n' "$st" "$out"`,
  'done',
].join('\n');

export interface CheckOutcome {
  exitCode: number;
  output: string;
  json: Record<string, unknown> | undefined;
}

export class CheckServer {
  private readonly child: ChildProcessWithoutNullStreams;
  private buffer = '';
  private waiters: ((text: string) => void)[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  /** qemu-img check runs performed. */
  runs = 0;

  constructor() {
    this.child = spawn('bash', ['-c', LOOP], { env: { ...process.env, QIMG: QEMU_IMG }, stdio: 'pipe' });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (t: string) => {
      this.buffer += t;
      for (;;) {
        const at = this.buffer.indexOf(`${END}\n`);
        if (at < 0) break;
        const text = this.buffer.slice(0, at);
        this.buffer = this.buffer.slice(at + END.length + 1);
        this.waiters.shift()?.(text);
      }
    });
    this.child.stdin.on('error', () => {});
  }

  check(file: string, repair: boolean): Promise<CheckOutcome> {
    const result = this.queue.then(
      () =>
        new Promise<CheckOutcome>((resolve, reject) => {
          if (this.child.exitCode !== null) {
            reject(new Error('the qemu-img check worker exited'));
            return;
          }
          this.waiters.push((text) => {
            const nl = text.indexOf('\n');
            const exitCode = Number(text.slice(0, nl));
            const output = text.slice(nl + 1);
            let json: Record<string, unknown> | undefined;
            const brace = output.indexOf('{');
            if (brace >= 0) {
              try {
                json = JSON.parse(output.slice(brace, output.lastIndexOf('}') + 1)) as Record<
                  string,
                  unknown
                >;
              } catch {
                json = undefined;
              }
            }
            this.runs += 1;
            resolve({ exitCode, output, json });
          });
          this.child.stdin.write(`${repair ? 'repair' : 'plain'}\n${file}\n`);
        }),
    );
    this.queue = result.catch(() => undefined);
    return result;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      this.child.on('exit', () => resolve());
      this.child.stdin.end();
    });
  }
}
