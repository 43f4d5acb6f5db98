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
import type { PatternRun } from '../model/reference-disk.ts';
import { qemuObjectArgs, qemuOpenOptions, type ImageLayout } from '../layout.ts';
import { qemuImgCreate, qemuImgSnapshot, type SnapshotOp } from '../qemu/qemu-img.ts';

export interface StdinProtocolOptions {
  name: string;
  argv: readonly string[];
  prompt?: string;
  /** The command opening an image (default: `open -o driver=qcow2 PATH`, plus the key of an encrypted one). */
  openCommand?: (path: string, layout: ImageLayout) => string;
  capabilities: Capabilities;
  scriptTool: ScriptTool;
}

/** Largest single `read -P` (qemu-io allocates a buffer of the read's length). */
const MAX_READ = 16 << 20;

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
    const session = await CommandSession.start({ argv, prompt: this.opts.prompt });
    const openCommand = this.opts.openCommand ?? defaultOpenCommand;
    const handle = new StdinProtocolHandle(path, session, (p) => openCommand(p, layout), layout);
    await handle.open();
    return handle;
  }
}

/** `open -o driver=qcow2[,encrypt.key-secret=ID] PATH`. */
export function defaultOpenCommand(path: string, layout: ImageLayout): string {
  return `open -o ${qemuOpenOptions(layout)} ${path}`;
}

export class StdinProtocolHandle implements ImageHandle {
  readonly path: string;
  private open_ = false;
  private readonly session: CommandSession;
  private readonly openCommand: (path: string) => string;
  /** For qemu-img snapshot: how to name the image (encrypted: --image-opts). */
  private readonly layout: ImageLayout | undefined;

  constructor(
    path: string,
    session: CommandSession,
    openCommand: (path: string) => string,
    layout?: ImageLayout,
  ) {
    this.path = path;
    this.session = session;
    this.openCommand = openCommand;
    this.layout = layout;
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
    await this.must('close');
  }

  async dispose(): Promise<void> {
    this.open_ = false;
    await this.session.quit();
  }

  async write(offset: number, length: number, pattern: number): Promise<void> {
    await this.must(`write -q -P ${pattern} ${offset} ${length}`);
  }

  async writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    await this.must(`write -q -z${unmap ? ' -u' : ''} ${offset} ${length}`);
  }

  async writeCompressed(offset: number, length: number, pattern: number): Promise<void> {
    await this.must(`write -q -c -P ${pattern} ${offset} ${length}`);
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.must(`discard -q ${offset} ${length}`);
  }

  async verify(runs: readonly PatternRun[]): Promise<ReadMismatch | undefined> {
    for (const run of runs) {
      for (let at = run.offset; at < run.offset + run.length; at += MAX_READ) {
        const len = Math.min(MAX_READ, run.offset + run.length - at);
        const out = await this.session.run(`read -q -P ${run.pattern} ${at} ${len}`);
        if (out.failed) {
          const m = /Pattern verification failed at offset (\d+)/.exec(out.output);
          if (!m) throw new ImplementationError(out.command, out.output.trim());
          return {
            offset: Number(m[1]),
            expected: `${len} bytes of 0x${run.pattern.toString(16)} at ${at}`,
            observed: out.output.trim(),
          };
        }
      }
    }
    return undefined;
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
