/**
 * Where a crash state's failure is reported: at the last started step that had logged a write by
 * then, never at a step that logged nothing (found by `qcow2 crashtest --impl qemu-io --seed
 * 2024`: a crash right after a discard's hole punch was reported at the read that followed, as a
 * NEW `read crash-unreadable`, instead of the known discard finding).
 */
import { describe, expect, it } from 'vitest';
import { crashWindow, type GuestTimeline } from './oracle.ts';

const timeline = (flushLike: boolean[]): GuestTimeline => ({ flushLike }) as unknown as GuestTimeline;

describe('crashWindow', () => {
  // setup 1 entry; step 0 write (entries 1-2), step 1 discard (3-4), step 2 read (none), step 3 write (5-6)
  const rec = { setupEntries: 1, stepEnds: [3, 5, 5, 7] };
  const t = timeline([false, false, false, false]);

  it('a crash right after a step, followed by a step that logged nothing: started there, blamed on the step before', () => {
    expect(crashWindow(rec, t, 5)).toEqual({ started: 2, flushed: -1, blamed: 1 });
  });
  it('a crash inside a step: started and blamed there', () => {
    expect(crashWindow(rec, t, 4)).toEqual({ started: 1, flushed: -1, blamed: 1 });
    expect(crashWindow(rec, t, 6)).toEqual({ started: 3, flushed: -1, blamed: 3 });
  });
  it('before any step logged: blamed where started', () => {
    expect(crashWindow({ setupEntries: 1, stepEnds: [1, 3] }, t, 1)).toEqual({
      started: 0,
      flushed: -1,
      blamed: 0,
    });
  });
});
