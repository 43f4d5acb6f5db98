/**
 * How many clusters a write request allocates together (QEMU's handle_alloc): from a guest
 * cluster that needs a new host cluster, the following clusters of the same request that need one
 * too, up to the end of its L2 table. The allocator then takes them as one run (Allocator.planRun),
 * so the refcount blocks the run needs land after it, where QEMU puts them.
 */
import { ClusterType, type L2Entry } from '../format/tables.ts';
import type { ImageState } from './state.ts';

/** Plan the run that starts at `guestCluster`, for a request ending before cluster `end`. */
export function planAllocationRun(
  s: ImageState,
  ownsExclusively: (e: L2Entry) => boolean,
  guestCluster: number,
  end: number,
): void {
  if (s.alloc.inRun() || s.map.dataFile) return;
  const perTable = s.clusterSize / (s.extendedL2 ? 16 : 8); // L2 entries per table (16 bytes when extended)
  const tableEnd = (Math.floor(guestCluster / perTable) + 1) * perTable;
  let n = 0;
  for (let c = guestCluster; c < Math.min(end, tableEnd); c++) {
    const e = s.map.lookup(c);
    // A cluster the request can write in place ends the run (data it owns, or preallocated zeros).
    const hasHost = e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc;
    if (hasHost && ownsExclusively(e)) break;
    n++;
  }
  s.alloc.planRun(n);
}
