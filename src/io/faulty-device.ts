/**
 * A fault-injecting block device: once armed, the Nth write below it fails with EIO or ENOSPC
 * (nothing of it written), as a disk error or a full disk would; `sticky` keeps every later write
 * and flush failing too (a device gone bad, a disk that stays full). Reads always work. Which
 * write is the Nth is for the caller to choose — the harness counts the writes of an operation in
 * a dry run and names them from the image's metadata (properties/crash/faults.ts).
 */
import { IoError } from '../errors.ts';
import type { BlockDevice } from './device.ts';

export type FaultErrno = 'EIO' | 'ENOSPC';

export interface FaultPlan {
  /** The write to fail, counted from arming (1 = the first). */
  nth: number;
  errno: FaultErrno;
  sticky?: boolean;
}

const MESSAGE: Record<FaultErrno, string> = { EIO: 'Input/output error', ENOSPC: 'No space left on device' };

export class FaultyDevice implements BlockDevice {
  readonly inner: BlockDevice;
  private plan: FaultPlan | undefined;
  private writes = 0;
  /** Set once the planned write failed. */
  failedAt: { offset: number; length: number } | undefined;

  constructor(inner: BlockDevice) {
    this.inner = inner;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get name(): string {
    return this.inner.name;
  }

  /** Start counting writes for the plan (undefined: disarm). */
  arm(plan: FaultPlan | undefined): void {
    this.plan = plan;
    this.writes = 0;
    this.failedAt = undefined;
  }

  private fail(op: string, offset?: number): never {
    const errno = this.plan?.errno ?? 'EIO';
    throw new IoError(
      `EIO_${op.toUpperCase() as Uppercase<string>}`,
      `${op} failed on '${this.name}'${offset === undefined ? '' : ` at offset ${offset}`}: ${MESSAGE[errno]}`,
      {
        path: this.name,
        op,
        offset,
        errno,
      },
    );
  }

  read(buf: Uint8Array, offset: number): void {
    this.inner.read(buf, offset);
  }

  write(buf: Uint8Array, offset: number): void {
    if (this.plan) {
      if (this.failedAt && this.plan.sticky) this.fail('write', offset);
      this.writes += 1;
      if (this.writes === this.plan.nth) {
        this.failedAt = { offset, length: buf.length };
        this.fail('write', offset);
      }
    }
    this.inner.write(buf, offset);
  }

  size(): number {
    return this.inner.size();
  }

  truncate(length: number): void {
    if (this.plan && this.failedAt && this.plan.sticky) this.fail('truncate', length);
    this.inner.truncate(length);
  }

  flush(): void {
    if (this.plan && this.failedAt && this.plan.sticky) this.fail('flush');
    this.inner.flush();
  }

  close(): void {
    this.inner.close();
  }
}
