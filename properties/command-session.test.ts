import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CommandSession } from './adapters/command-session.ts';
import { QEMU_IO, qemuImg } from './qemu/qemu-img.ts';

describe('CommandSession (pipelined qemu-io)', () => {
  it('answers many commands sent at once, each with its own output, in order', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'session-test-'));
    const img = path.join(dir, 't.qcow2');
    try {
      const created = await qemuImg(['create', '-q', '-f', 'qcow2', img, '4M']);
      expect(created.exitCode).toBe(0);
      const session = await CommandSession.start({ argv: [QEMU_IO] });
      const commands = [`open -o driver=qcow2 ${img}`];
      for (let i = 0; i < 40; i++) commands.push(`write -q -P ${i + 1} ${i * 4096} 4096`);
      // one wrong pattern in the middle: only its reply may say so
      for (let i = 0; i < 40; i++) commands.push(`read -q -P ${i === 17 ? 99 : i + 1} ${i * 4096} 4096`);
      commands.push('read -v 8192 16');
      const outcomes = await Promise.all(commands.map((c) => session.run(c)));
      await session.quit();
      expect(outcomes.map((o) => o.command)).toEqual(commands);
      const failed = outcomes.flatMap((o, i) => (o.failed ? [i] : []));
      expect(failed).toEqual([1 + 40 + 17]);
      expect(outcomes[1 + 40 + 17].output).toMatch(/Pattern verification failed at offset 69632/);
      expect(outcomes[outcomes.length - 1].output).toMatch(/^00002000: {2}03 03 03 03/m);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
