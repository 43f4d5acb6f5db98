/**
 * The engine in process: `Qcow2Image` from src/image.ts, or from the module named by the
 * environment variable QCOW2_ENGINE (a scratch copy with a planted bug, for instance).
 * Capabilities are probed once by creating tiny images: what the engine refuses with an error is
 * left out of the layouts and commands (the probe results are printed by the CLI).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CreateOptions, Image, OpenOptions } from '../../src/api.ts';
import type {
  Capabilities,
  ImageHandle,
  ImplementationUnderTest,
  ReadMismatch,
  ScriptTool,
} from './adapter.ts';
import { ImplementationError } from './adapter.ts';
import { keepDeclared } from './engine-declared.ts';
import { engineCreateOptions, FUZZ_SECRET, type ImageLayout } from '../layout.ts';
import type { AioWrite, WriteSource } from '../steps.ts';
import type { BackingFormat } from '../layout.ts';
import { firstDifference } from '../model/compare-bytes.ts';

export interface EngineModule {
  Qcow2Image: {
    create(path: string, opts: CreateOptions): Image;
    open(path: string, opts?: OpenOptions): Image;
  };
}

const DEFAULT_ENGINE = new URL('../../src/image.ts', import.meta.url);

export function engineModuleUrl(): string {
  const fromEnv = process.env.QCOW2_ENGINE;
  return fromEnv ? pathToFileURL(path.resolve(fromEnv)).href : DEFAULT_ENGINE.href;
}

let loaded: Promise<EngineModule> | undefined;

export function loadEngine(): Promise<EngineModule> {
  loaded ??= (async () => {
    const engine = (await import(engineModuleUrl())) as EngineModule;
    await rememberLuksUnlocks(engineModuleUrl());
    return engine;
  })();
  return loaded;
}

/**
 * Every `reopen` of a LUKS image unlocks it again (~10 CPU-ms: PBKDF2 twice, 4,000 AF stripes), the
 * largest cost of a LUKS sequence's operation loop. The engine's unlock memo (crypto/luks-unlock-memo.ts,
 * `setLuksUnlockMemo` exported by crypto/luks.ts) hands back a master key only for the very same header fields, password and
 * key material bytes, so the first unlock of every image is still a full one. Turned on in the
 * engine's own crypto module next to the engine module (a planted copy's too), when it has it.
 */
async function rememberLuksUnlocks(engineUrl: string): Promise<void> {
  const luksUrl = new URL(`./crypto/luks${path.extname(new URL(engineUrl).pathname)}`, engineUrl);
  if (!fs.existsSync(luksUrl)) return;
  const luks = (await import(luksUrl.href)) as { setLuksUnlockMemo?: (entries: number) => void };
  luks.setLuksUnlockMemo?.(16);
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return `${e.name}${typeof code === 'string' ? ` ${code}` : ''}: ${e.message}`;
  }
  return String(e);
}

/** Run an engine call, turning any throw into an ImplementationError. */
function attempt<T>(operation: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new ImplementationError(operation, describe(e));
  }
}

export const ENGINE_SCRIPT_TOOL: ScriptTool = { io: 'npx qcow2 io', snapshot: 'npx qcow2 snapshot' };

export class EngineImplementation implements ImplementationUnderTest {
  readonly name = 'engine';
  readonly scriptTool = ENGINE_SCRIPT_TOOL;
  private probed: Promise<Capabilities> | undefined;
  /** Why each probed feature was left out (shown by the CLI). */
  readonly probeNotes: string[] = [];

  capabilities(): Promise<Capabilities> {
    // (never narrower than the engine declares: adapters/engine-declared.ts)
    this.probed ??= this.probe().then((caps) => keepDeclared(caps, this.probeNotes));
    return this.probed;
  }

  async create(file: string, layout: ImageLayout): Promise<ImageHandle> {
    const engine = await loadEngine();
    const image = attempt('create', () => engine.Qcow2Image.create(file, engineCreateOptions(layout)));
    return new EngineHandle(file, engine, image, engineOpenSecret(layout), layout.cache);
  }

  private async probe(): Promise<Capabilities> {
    const engine = await loadEngine();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-probe-'));
    let n = 0;
    const tryLayout = (what: string, opts: Partial<CreateOptions>, use?: (img: Image) => void): boolean => {
      const file = path.join(dir, `p${n++}.qcow2`);
      let img: Image;
      try {
        img = engine.Qcow2Image.create(file, { size: 4 << 20, sync: false, ...opts });
      } catch (e) {
        this.probeNotes.push(`${what}: ${describe(e)}`);
        return false;
      }
      // Refused at creation: left out. Accepted, then failing in use: a bug the runs must meet and
      // report, never a reason to leave the feature out (an engine whose backing reads throw
      // would otherwise run no layout with a backing file, and its campaigns pass).
      try {
        use?.(img);
      } catch (e) {
        this.probeNotes.push(`${what}: accepted, then failed in use (kept in the layouts): ${describe(e)}`);
      }
      try {
        img.close();
      } catch (e) {
        this.probeNotes.push(`${what}: accepted, then failed to close (kept in the layouts): ${describe(e)}`);
      }
      return true;
    };
    try {
      const compat = (['0.10', '1.1'] as const).filter((c) => tryLayout(`compat ${c}`, { compat: c }));
      const bits = [9, 10, 12, 16, 20, 21].filter((b) =>
        tryLayout(`cluster_bits ${b}`, { clusterSize: 2 ** b }),
      );
      const refcountBits = [1, 2, 4, 8, 16, 32, 64].filter((w) =>
        tryLayout(`refcount_bits ${w}`, { refcountBits: w }),
      );
      fs.writeFileSync(path.join(dir, 'probe-base.raw'), new Uint8Array(8192).fill(9));
      const backingFile = tryLayout(
        'backing file',
        { backingFile: 'probe-base.raw', backingFormat: 'raw' },
        // (only that it is accepted: wrong data is a failure the runs report, never a reason to
        // leave the feature out)
        (img) => {
          img.write(0, new Uint8Array(512).fill(1));
          img.read(512, 512);
        },
      );
      // qemu-img drops the feature name table when the header would not fit in one cluster
      const backingMinClusterBits = [9, 10, 11, 12].find((b) =>
        tryLayout(`backing file with cluster_bits ${b}`, {
          clusterSize: 2 ** b,
          backingFile: 'probe-base.raw',
          backingFormat: 'raw',
        }),
      );
      const encryptMinClusterBits = [9, 10, 11, 12].find((b) =>
        tryLayout(`LUKS with cluster_bits ${b}`, {
          clusterSize: 2 ** b,
          encrypt: { format: 'luks', secret: new TextEncoder().encode('probe'), iterTimeMs: 10 },
        }),
      );
      return {
        compat: compat.length > 0 ? compat : ['1.1'],
        clusterBits: { min: Math.min(...bits, 16), max: Math.max(...bits, 16) },
        refcountBits: refcountBits.length > 0 ? refcountBits : [16],
        extendedL2: tryLayout('extended_l2', { extendedL2: true, clusterSize: 65536 }),
        compressionTypes: (['zlib', 'zstd'] as const).filter((t) =>
          tryLayout(`compression ${t}`, { compressionType: t }, (img) =>
            img.writeCompressed(0, new Uint8Array(img.clusterSize).fill(7)),
          ),
        ),
        lazyRefcounts: tryLayout('lazy_refcounts', { lazyRefcounts: true }),
        backingFile,
        backingMinClusterBits,
        encryptMinClusterBits,
        encryption: (['aes', 'luks'] as const).filter((format) =>
          tryLayout(
            `encryption ${format}`,
            { encrypt: { format, secret: new TextEncoder().encode('probe'), iterTimeMs: 10 } },
            (img) => {
              img.write(0, new Uint8Array(1024).fill(3));
              img.read(512, 512);
            },
          ),
        ),
        compressedWrite: tryLayout('compressed write', {}, (img) =>
          img.writeCompressed(0, new Uint8Array(img.clusterSize).fill(7)),
        ),
        snapshots: tryLayout('snapshots', {}, (img) => {
          img.write(0, new Uint8Array(512).fill(1));
          img.createSnapshot('probe');
          img.applySnapshot('probe');
          img.deleteSnapshot('probe');
        }),
        resize: tryLayout('resize', {}, (img) => {
          img.resize(8 << 20);
          img.resize(4 << 20, { shrink: true });
        }),
        // persistent dirty bitmaps kept as QEMU keeps them (qemu-img bitmap adds them in the runs)
        bitmaps: tryLayout('bitmaps', {}, (img) => {
          if (typeof (img as { addBitmap?: unknown }).addBitmap !== 'function')
            throw new Error('the engine has no addBitmap');
          (img as unknown as { addBitmap(name: string): void }).addBitmap('probe');
          img.write(0, new Uint8Array(512).fill(1));
        }),
        // `qcow2 io` serves aio_write requests one after another: a serial order, as the model allows
        aioWrite: true,
        rebaseCommit: tryLayout(
          'rebase and commit',
          { backingFile: 'probe-base.raw', backingFormat: 'raw' },
          (img) => {
            const b = img as Partial<BackingMethods>;
            if (typeof b.setBacking !== 'function' || typeof b.commit !== 'function')
              throw new Error('the engine has no setBacking/commit');
          },
        ),
        vmState: tryLayout('vm state', {}, (img) => {
          img.writeVmState(0, new Uint8Array(512).fill(5));
          img.readVmState(0, 512);
        }),
        amend: tryLayout('amend', {}, (img) => {
          if (typeof (img as { amend?: unknown }).amend !== 'function')
            throw new Error('the engine has no amend');
          (img as unknown as Amendable).amend({ lazyRefcounts: true });
        }),
        involvesQemu: false,
      };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

const PIECE = 4 << 20;

/** Compare an image's bytes with the expected ones, 4 MiB at a time; the first difference. */
export function compareBytes(
  read: (offset: number, length: number) => Uint8Array,
  offset: number,
  expected: Uint8Array,
): ReadMismatch | undefined {
  return compareInto((out, at) => out.set(read(at, out.length)), offset, expected);
}

/** One reused buffer for the engine's reads (reads are compared, and copied only on a mismatch). */
let scratch = new Uint8Array(0);

/**
 * Compare through a read into a caller's buffer (`Image.readInto`): one buffer for every read, so
 * a whole-disk read-back allocates nothing. The buffer holds the previous read's bytes: a read that
 * left any byte unwritten shows them, where a fresh zeroed buffer would hide a missing zero fill.
 */
export function compareInto(
  readInto: (out: Uint8Array, offset: number) => void,
  offset: number,
  expected: Uint8Array,
): ReadMismatch | undefined {
  if (scratch.length < Math.min(PIECE, expected.length))
    scratch = new Uint8Array(Math.min(PIECE, Math.max(expected.length, 64 << 10)));
  for (let from = 0; from < expected.length; from += PIECE) {
    const to = Math.min(expected.length, from + PIECE);
    const got = scratch.subarray(0, to - from);
    readInto(got, offset + from);
    const at = firstDifference(got, expected.subarray(from, to));
    if (at >= 0) return { offset: offset + from + at, observed: got.slice(), observedAt: offset + from };
  }
  return undefined;
}

/** The engine's open-time secret for the layout (undefined: not encrypted). */
export function engineOpenSecret(layout: ImageLayout): Uint8Array | undefined {
  return layout.encrypt ? new TextEncoder().encode(FUZZ_SECRET) : undefined;
}

/** The engine's backing-file operations (Qcow2Image; not part of the `Image` interface). */
interface BackingMethods {
  setBacking(name: string | undefined, format?: BackingFormat, opts?: { mustExist?: boolean }): void;
  commit(): void;
}

/** A backing file's bytes as the guest sees them through it (zeros past its end). */
function baseReader(
  engine: EngineModule,
  file: string,
  format: BackingFormat,
): {
  read(offset: number, length: number): Uint8Array;
  close(): void;
} {
  if (format === 'qcow2') {
    const img = engine.Qcow2Image.open(file, { readOnly: true, sync: false });
    return {
      read: (offset, length) => {
        const out = new Uint8Array(length);
        if (offset < img.size) out.set(img.read(offset, Math.min(length, img.size - offset)));
        return out;
      },
      close: () => img.close(),
    };
  }
  const fd = fs.openSync(file, 'r');
  return {
    read: (offset, length) => {
      const out = new Uint8Array(length);
      fs.readSync(fd, out, 0, length, offset);
      return out;
    },
    close: () => fs.closeSync(fd),
  };
}

export class EngineHandle implements ImageHandle {
  readonly path: string;
  /** `Image.write` and `writeCompressed` are synchronous and keep no reference to the data. */
  readonly borrowsWriteData = true;
  private readonly engine: EngineModule;
  private image: Image | undefined;
  private readonly secret: Uint8Array | undefined;

  /** Tiny metadata caches for every open (OpenOptions.cache), when the layout asks for them. */
  private readonly cache: OpenOptions['cache'];

  constructor(
    file: string,
    engine: EngineModule,
    image: Image,
    secret?: Uint8Array,
    cache?: OpenOptions['cache'],
  ) {
    this.path = file;
    this.engine = engine;
    this.image = image;
    this.secret = secret;
    this.cache = cache;
  }

  get isOpen(): boolean {
    return this.image !== undefined;
  }

  private get img(): Image {
    if (!this.image) throw new ImplementationError('engine', 'image is closed');
    return this.image;
  }

  async open(): Promise<void> {
    if (this.image) return;
    this.image = attempt('open', () =>
      this.engine.Qcow2Image.open(this.path, {
        sync: false,
        ...(this.secret ? { secret: this.secret } : {}),
        ...(this.cache ? { cache: this.cache } : {}),
      }),
    );
  }

  async close(): Promise<void> {
    const img = this.image;
    this.image = undefined;
    if (img) attempt('close', () => img.close());
  }

  async dispose(): Promise<void> {
    try {
      await this.close();
    } catch {
      // disposing after a failure: the failure is already reported
    }
  }

  async write(offset: number, data: Uint8Array, _source: WriteSource): Promise<void> {
    attempt(`write ${offset} ${data.length}`, () => this.img.write(offset, data));
  }

  async writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    attempt(`write -z ${offset} ${length}`, () => this.img.writeZeroes(offset, length, { unmap }));
  }

  async writeCompressed(offset: number, data: Uint8Array, _source: WriteSource): Promise<void> {
    attempt(`write -c ${offset} ${data.length}`, () => this.img.writeCompressed(offset, data));
  }

  async discard(offset: number, length: number): Promise<void> {
    attempt(`discard ${offset} ${length}`, () => this.img.discard(offset, length));
  }

  async verify(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined> {
    const img = this.img;
    return attempt(`read ${offset} ${expected.length}`, () =>
      compareInto((out, o) => img.readInto(out, o), offset, expected),
    );
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const img = this.img;
    return attempt(`read ${offset} ${length}`, () => img.read(offset, length));
  }

  async flush(): Promise<void> {
    attempt('flush', () => this.img.flush());
  }

  async resize(newSize: number): Promise<void> {
    attempt(`resize ${newSize}`, () => this.img.resize(newSize, { shrink: true }));
  }

  async snapshotCreate(name: string): Promise<void> {
    attempt(`snapshot -c ${name}`, () => this.img.createSnapshot(name));
  }

  async snapshotApply(name: string): Promise<void> {
    attempt(`snapshot -a ${name}`, () => this.img.applySnapshot(name));
  }

  async snapshotDelete(name: string): Promise<void> {
    attempt(`snapshot -d ${name}`, () => this.img.deleteSnapshot(name));
  }

  /** One request after another, in submission order (what `qcow2 io`'s aio_write does). */
  async aioWriteBatch(writes: readonly AioWrite[]): Promise<void> {
    for (const w of writes)
      attempt(`aio_write -P ${w.pattern} ${w.offset} ${w.length}`, () =>
        this.img.write(w.offset, new Uint8Array(w.length).fill(w.pattern)),
      );
    attempt('aio_flush', () => this.img.flush());
  }

  /**
   * `qcow2 rebase`: in safe mode every cluster that reads differently through the new backing
   * file is written into the image first (its current bytes), then the name changes.
   */
  async rebase(name: string | null, format: BackingFormat | undefined, unsafe: boolean): Promise<void> {
    const img = this.img;
    const b = img as unknown as BackingMethods;
    attempt(`rebase${unsafe ? ' -u' : ''} -b ${name ?? "''"}`, () => {
      if (!unsafe) {
        const nb =
          name === null
            ? undefined
            : baseReader(this.engine, path.join(path.dirname(this.path), name), format ?? 'qcow2');
        try {
          const cs = img.clusterSize;
          const PIECE = Math.max(cs, 1 << 20);
          for (let at = 0; at < img.size; at += PIECE) {
            const len = Math.min(PIECE, img.size - at);
            const mine = img.read(at, len);
            const theirs = nb ? nb.read(at, len) : new Uint8Array(len);
            if (Buffer.compare(mine, theirs) === 0) continue;
            for (let c = 0; c < len; c += cs) {
              const end = Math.min(len, c + cs);
              if (Buffer.compare(mine.subarray(c, end), theirs.subarray(c, end)) !== 0)
                img.write(at + c, mine.subarray(c, end));
            }
          }
        } finally {
          nb?.close();
        }
      }
      b.setBacking(name ?? undefined, name === null ? undefined : format, { mustExist: !unsafe });
      img.flush();
    });
  }

  async commit(): Promise<void> {
    const b = this.img as unknown as BackingMethods;
    attempt('commit', () => b.commit());
  }
  async vmStateWrite(offset: number, data: Uint8Array, _source: WriteSource): Promise<void> {
    attempt(`write -b ${offset} ${data.length}`, () => this.img.writeVmState(offset, data));
  }

  async vmStateVerify(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined> {
    const img = this.img;
    return attempt(`read -b ${offset} ${expected.length}`, () =>
      compareBytes((o, l) => img.readVmState(o, l), offset, expected),
    );
  }

  /** The engine's amend (engine/amend.ts), then a close and reopen as qemu-img's would. */
  async amend(option: string): Promise<void> {
    const [key, value] = option.split('=') as [string, string];
    const opts: AmendOptions =
      key === 'compat'
        ? { compat: value }
        : key === 'refcount_bits'
          ? { refcountBits: Number(value) }
          : { lazyRefcounts: value === 'on' };
    attempt(`amend -o ${option}`, () => (this.img as unknown as Amendable).amend(opts));
    await this.close();
    await this.open();
  }
}

type AmendOptions = { compat?: string; refcountBits?: number; lazyRefcounts?: boolean };
interface Amendable {
  amend(opts: AmendOptions): void;
}
