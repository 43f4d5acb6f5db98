/**
 * A minimal qcow2 host layout on an in-memory device for unit tests of the engine's layers:
 * cluster 0 (header, left empty), the refcount table in cluster 1, its first refcount block in
 * cluster 2, each counting itself — what `qemu-img create` lays out before the L1 table.
 */
import { setRefcount, writeRefTable } from '../../../src/format/tables.ts';
import { MemoryDevice, type BlockDevice } from '../../../src/io/device.ts';

export interface Layout {
  dev: MemoryDevice;
  clusterBits: number;
  clusterSize: number;
  order: number;
}

export function emptyLayout(clusterBits = 9, order = 4): Layout {
  const cs = 2 ** clusterBits;
  const dev = new MemoryDevice();
  dev.write(new Uint8Array(3 * cs), 0);
  const table = new Uint8Array(cs);
  writeRefTable(table, 0, 2 * cs);
  dev.write(table, cs);
  const block = new Uint8Array(cs);
  for (let c = 0; c < 3; c++) setRefcount(block, c, order, 1);
  dev.write(block, 2 * cs);
  return { dev, clusterBits, clusterSize: cs, order };
}

/** A device that records every write and flush, in order, for write-order assertions. */
export class RecordingMemory implements BlockDevice {
  readonly log: string[] = [];
  constructor(private readonly inner: BlockDevice) {}
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get name(): string {
    return this.inner.name;
  }
  read(buf: Uint8Array, offset: number): void {
    this.inner.read(buf, offset);
  }
  write(buf: Uint8Array, offset: number): void {
    this.log.push(`write ${offset}`);
    this.inner.write(buf, offset);
  }
  size(): number {
    return this.inner.size();
  }
  truncate(n: number): void {
    this.inner.truncate(n);
  }
  flush(): void {
    this.log.push('flush');
    this.inner.flush();
  }
  close(): void {
    this.inner.close();
  }
}
