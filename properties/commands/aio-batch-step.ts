/**
 * Performing an `aio_write` batch (steps.ts `aio-batch`): every request is put in flight, then
 * `aio_flush`; the model (model/aio-orders.ts) accepts, for each group of overlapping requests,
 * exactly the results of some serial order of the group, and takes the one the image holds.
 */
import { Divergence } from '../runner/divergence.ts';
import type { RunContext } from '../runner/run-context.ts';
import type { DiskModel } from '../model/disk-model.ts';
import { batchOrder, groupCandidates, overlapGroups } from '../model/aio-orders.ts';
import { describePerCluster, perClusterSerial } from '../model/aio-per-cluster.ts';
import { formatStepLine, type AioBatchStep } from '../steps.ts';
import { clusterSizeOf } from '../layout.ts';

export async function performAioBatch(
  ctx: RunContext,
  step: AioBatchStep,
  stepIndex: number,
  line: string,
): Promise<void> {
  const h = ctx.handle;
  if (!h.aioWriteBatch) throw new Error(`harness: ${ctx.impl.name} has no aio_write batches`);
  const groups = overlapGroups(step.writes);
  const before = groups.map((g) => ctx.model.read(g.offset, g.length));
  await h.aioWriteBatch(step.writes, step.hold);
  const orders: number[][] = [];
  for (const [g, group] of groups.entries()) {
    const candidates = groupCandidates(step.writes, group, before[g]);
    if (candidates.length === 1) {
      orders.push(candidates[0].order);
      continue;
    }
    // several serial orders give different bytes: the image must hold one of them
    const got = await h.read(group.offset, group.length);
    const match = candidates.find((c) => Buffer.compare(c.bytes, got) === 0);
    if (!match) {
      // (QEMU 7.2 tears overlapping requests per cluster: say so when that is all it is)
      const perCluster = perClusterSerial(step.writes, group, before[g], got, clusterSizeOf(ctx.layout));
      const mix = describeMix(step, group.members, got, group.offset);
      throw new Divergence({
        kind: 'read-mismatch',
        category: 'aio-no-serial-order',
        stepIndex,
        step: line,
        expected: `the result of one of ${candidates.length} serial orders of requests ${group.members.join(', ')} over ${group.offset}+${group.length}`,
        observed: perCluster ? `${mix}; ${describePerCluster(perCluster)}` : mix,
      });
    }
    orders.push(match.order);
  }
  step.landed = batchOrder(groups, orders);
  ctx.steps[stepIndex] = formatStepLine(step, false);
}

/** Which request's pattern each stretch of the range holds (e.g. "0x11 ×300 at 4096, 0x12 ×212 at 4396"). */
function describeMix(step: AioBatchStep, members: number[], got: Uint8Array, at: number): string {
  const parts: string[] = [];
  let start = 0;
  for (let i = 1; i <= got.length && parts.length < 12; i++) {
    if (i < got.length && got[i] === got[start]) continue;
    const owner = members.filter((m) => step.writes[m].pattern === got[start]);
    const who = owner.length > 0 ? ` (request ${owner.join('/')})` : '';
    parts.push(`0x${got[start].toString(16).padStart(2, '0')} ×${i - start} at ${at + start}${who}`);
    start = i;
  }
  return `the image holds ${parts.join(', ')}`;
}

/** The model's side: the requests in the order they landed (submission order when unambiguous). */
export function applyAioBatch(model: DiskModel, step: AioBatchStep): void {
  for (const w of step.writes) model.bitmaps.record(w.offset, w.length, model.size);
  model.aioBatch(step.writes, step.landed ?? step.writes.map((_, i) => i));
}
