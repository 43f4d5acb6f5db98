/**
 * `qcow2 diagnose` on damage QEMU itself does and on the damaged-image set: the findings name the
 * cluster, the entries and the guest ranges, the wrong ranges really read wrong (qemu-io says so),
 * the verdict is qemu-img check's, and the HTML page renders in a real headless browser.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, tempDir, type TempDir } from '../support/qemu.ts';
import { diagnose, type Diagnosis } from '../../src/diagnose/index.ts';
import { renderDiagnosisHtml } from '../../src/diagnose/report-html.ts';
import { FileDevice } from '../../src/io/device.ts';
import { buildBaseImages, type BaseImage } from '../../properties/damage/base-images.ts';
import { applyDamage, mutantDamages, recipeDamages } from '../../properties/damage/damage.ts';

function diagnoseFile(file: string): Diagnosis {
  const dev = FileDevice.open(file, { readOnly: true });
  try {
    return diagnose(dev);
  } finally {
    dev.close();
  }
}

/** qemu-img check's verdict as diagnose states it: 0 clean, 2 corruptions, 3 leaks only. */
const verdict = (d: Diagnosis): number =>
  d.version === undefined ? 1 : d.corruptions > 0 ? 2 : d.leaks > 0 ? 3 : 0;

let tmp: TempDir;
let dir: string;
beforeAll(() => {
  tmp = tempDir('diagnose');
  dir = tmp.dir;
});
afterAll(() => tmp.cleanup());

describe('qcow2 diagnose', () => {
  it('names the doubly referenced cluster of QEMU 7.2 compressed-after-discard damage, both guest ranges, and the one that reads wrong', () => {
    const img = path.join(dir, 'qemu-defect.qcow2');
    expect(run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '64M']).status).toBe(0);
    const io = ['write -c -P 1 0 64k', 'discard 0 64k', 'write -P 2 1M 64k', 'write -c -P 3 2M 64k'];
    expect(run('qemu-io', [...io.flatMap((c) => ['-c', c]), img]).status).toBe(0);
    expect(run('qemu-img', ['check', img]).stderr).toMatch(/OFLAG_COPIED data cluster.*refcount=2/);

    const d = diagnoseFile(img);
    const shared = d.findings.find((f) => f.code === 'DOUBLY_OWNED');
    expect(shared).toBeDefined();
    const owners = shared!.owners!.map((o) => [o.kind, o.guest?.offset]);
    expect(owners).toEqual(
      expect.arrayContaining([
        ['data', 0x100000],
        ['compressed', 0x200000],
      ]),
    );
    expect(shared!.refcount).toBe(2);
    // The plain cluster at 1M reads the compressed bytes; the compressed cluster at 2M is intact.
    const wrong = shared!.readsWrong!;
    expect(wrong.length).toBeGreaterThan(0);
    for (const w of wrong) {
      expect(w.offset).toBeGreaterThanOrEqual(0x100000);
      expect(w.offset + w.length).toBeLessThanOrEqual(0x110000);
      expect(run('qemu-io', ['-c', `read -P 2 ${w.offset} ${w.length}`, img]).stdout).toMatch(
        /Pattern verification failed/,
      );
    }
    expect(run('qemu-io', ['-c', 'read -P 3 2M 64k', img]).stdout).not.toMatch(/failed/);
    expect(d.findings.some((f) => f.code === 'COPIED_SET' && f.hostOffset === shared!.hostOffset)).toBe(true);
    expect(verdict(d)).toBe(2);
  });

  it('gives the verdict of qemu-img check on the damage recipes and a fixed sample of mutants, and never throws', async () => {
    const bases: BaseImage[] = await buildBaseImages(path.join(dir, 'bases'));
    const damages = [...recipeDamages(bases), ...mutantDamages(bases, 3, 60)];
    const differ: string[] = [];
    let compared = 0;
    for (const dmg of damages) {
      const file = path.join(dir, 'damaged.qcow2');
      fs.writeFileSync(file, applyDamage(bases.find((b) => b.recipe.name === dmg.base)!.bytes, dmg));
      const q = run('qemu-img', ['check', file]).status;
      const d = diagnoseFile(file); // a throw fails the test: hostile images are findings, not crashes
      if (q !== 0 && q !== 2 && q !== 3) continue; // qemu could not check it at all
      compared += 1;
      if (verdict(d) !== q) differ.push(`${dmg.id}: qemu-img check exit ${q}, diagnose ${verdict(d)}`);
    }
    expect(compared).toBeGreaterThan(80);
    expect(differ).toEqual([]);
  }, 300_000);

  it('writes a self-contained page that headless Chromium renders, with the findings and one cell per cluster', () => {
    const img = path.join(dir, 'qemu-defect.qcow2');
    const d = diagnoseFile(img);
    const html = path.join(dir, 'd.html');
    fs.writeFileSync(html, renderDiagnosisHtml(d));
    expect(fs.readFileSync(html, 'utf8')).not.toMatch(/(src|href)="https?:/);
    const r = spawnSync(
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${path.join(dir, 'chromium-profile')}`,
        '--dump-dom',
        `file://${html}`,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.error, 'Debian chromium is needed (scripts/setup.sh installs it)').toBeUndefined();
    const dom = r.stdout;
    expect(dom).toContain(`data-cells="${d.picture.cells.length}"`);
    expect((dom.match(/class="flag"/g) ?? []).length).toBeGreaterThan(0);
    for (const f of d.findings) expect(dom).toContain(f.code);
    expect(dom).toContain(`<b id="corruptions">${d.corruptions}</b>`);
  }, 120_000);
});
