/**
 * The engine's capability probe leaves out only what the engine refuses at creation: a feature it
 * accepts and then fails in use stays in the layouts, so that the campaign meets the failure. With
 * a planted backing-read bug (a read through to the backing file running past its end, which
 * throws in the probe's own read), backing files stay a capability and the probe notes why.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { plantEngineBug } from './campaign/planted-bug.ts';
import { PLANTED_SET } from './campaign/planted-set.ts';
import { EngineImplementation } from './adapters/engine.ts';

const bug = PLANTED_SET.find((b) => b.name.startsWith('a read through to the backing file runs past'))!;
const engine = plantEngineBug(bug);

afterAll(() => {
  delete process.env.QCOW2_ENGINE;
  fs.rmSync(path.dirname(path.dirname(engine)), { recursive: true, force: true });
});

describe('the engine capability probe', () => {
  it('keeps backing files when the engine accepts them and then fails in use', async () => {
    // (read when the engine module is first loaded: this file's own module state)
    process.env.QCOW2_ENGINE = engine;
    const impl = new EngineImplementation();
    const caps = await impl.capabilities();
    expect(caps.backingFile).toBe(true);
    expect(impl.probeNotes.join('\n')).toMatch(/backing file: accepted, then failed in use .*OUT_OF_RANGE/);
  });
});
