/**
 * The HTML report in a real browser (Debian's chromium, headless): the page renders offline, its
 * charts are drawn from the data it carries, and the numbers it shows are the report's.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dumpDom } from './browser.ts';
import { reportMarkdown, writeReport, REPORT_FORMAT, type CampaignReport } from './report.ts';
import { mergeReports } from './merge.ts';

export function sampleReport(): CampaignReport {
  const failures: CampaignReport['failures'] = [
    {
      key: 'engine@0.1.0 read-mismatch read stale',
      signature: { oracle: 'read-mismatch', command: 'read', category: 'stale', subject: 'engine@0.1.0' },
      count: 3,
      firstSeenMs: 12_300,
      firstIndex: 4,
      message: 'read-mismatch at step 2 (read -P 0xed 0 4096): expected 0xed, observed 00',
      unshrunkSteps: 41,
      shrink: {
        status: 'full',
        steps: ['write -P 0x01 130560 1024', 'read -P 0x01 131583 1'],
        ms: 4200,
        case: '/tmp/cases/case-a.json',
        script: '/tmp/cases/case-a.sh',
      },
    },
    {
      key: 'engine@0.1.0 qemu-img-check write-compressed corruptions',
      signature: {
        oracle: 'qemu-img-check',
        command: 'write-compressed',
        category: 'corruptions',
        subject: 'engine@0.1.0',
        knownBug: 'compressed-overlap',
      },
      count: 2,
      firstSeenMs: 30_000,
      firstIndex: 9,
      message: 'qemu-img check: 1 corruption',
      unshrunkSteps: 17,
      shrink: { status: 'partial', steps: ['write -c -P 0x03 0 65536'], ms: 9000 },
    },
  ];
  return {
    format: REPORT_FORMAT,
    version: 1,
    identity: {
      tool: 'qcow2-ts',
      toolVersion: '0.1.0',
      gitCommit: '0123456789abcdef0123456789abcdef01234567',
      task: 'fuzz',
      impl: 'engine',
      implVersion: '0.1.0',
      seed: 4242,
      shards: [{ index: 1, count: 4 }],
      options: { seconds: 60, jobs: 2 },
      host: { hostname: 'test', cpus: 2, node: 'v20' },
      startedAt: '2026-11-25T17:00:00.000Z',
      notes: [],
    },
    timing: { elapsedMs: 60_400, budgetMs: 60_000, jobs: 2 },
    volume: {
      sequences: 14,
      operations: 3210,
      steps: 730,
      byKind: { write: 300, read: 200, discard: 130, flush: 100 },
      byLayout: { 'v3 64K rc16': 9, 'v2 4K rc16 backing:qcow2': 3, 'v3 512B rc1 extl2 zstd luks': 2 },
      shrinkMs: 13_200,
    },
    indices: [
      [1, 1],
      [5, 5],
      [9, 9],
      [13, 13],
      [17, 17],
      [21, 21],
      [25, 25],
      [29, 29],
      [33, 33],
      [37, 37],
      [41, 41],
      [45, 45],
      [49, 49],
      [53, 53],
    ],
    throughput: {
      bucketSeconds: 2,
      points: Array.from({ length: 31 }, (_, i) => ({
        t: 2 * i,
        sequences: i % 2 === 1 && i < 29 ? 1 : 0,
        operations: i % 2 === 1 && i < 29 ? 229 : 0,
      })),
    },
    lengths: { '12': 2, '40': 5, '77': 4, '300': 3 },
    coverage: {
      files: {
        'src/image.ts': {
          lines: { total: 100, covered: 60, hit: '1-60' },
          branches: { total: 10, covered: 4, hit: ['0.0', '0.1', '1.0', '2.1'] },
        },
        'src/engine/refcounts.ts': {
          lines: { total: 50, covered: 25, hit: '1-25' },
          branches: { total: 4, covered: 1, hit: ['0.0'] },
        },
      },
      total: { lines: { total: 150, covered: 85 }, branches: { total: 14, covered: 5 } },
    },
    failures,
    knownBugs: [{ id: 'compressed-overlap', key: failures[1].key, count: 2 }],
    problems: [],
    exitCode: 1,
  };
}

function canvas(dom: string, id: string): Record<string, string> {
  const tag = new RegExp(`<canvas[^>]*id="${id}"[^>]*>`).exec(dom)?.[0];
  if (!tag) throw new Error(`no canvas ${id} in the page`);
  return Object.fromEntries([...tag.matchAll(/([\w-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

const textOf = (dom: string, id: string): string | undefined =>
  new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(dom)?.[1];

describe('HTML report', () => {
  it("renders in headless chromium with the report's numbers and charts drawn from its data", async () => {
    const r = sampleReport();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-report-'));
    const paths = await writeReport(path.join(dir, 'r.json'), r);
    const html = fs.readFileSync(paths.html, 'utf8');
    // Self-contained: no resource loaded from anywhere (Chart.js is inlined).
    expect(html).not.toMatch(/<(script|img|iframe)[^>]+src=|<link[^>]+href=|@import|url\(/);
    const dom = await dumpDom(paths.html);
    expect(dom).toContain('data-charts="drawn"');
    expect(textOf(dom, 'sequences')).toBe('14');
    expect(textOf(dom, 'operations')).toBe('3,210');
    expect(textOf(dom, 'steps')).toBe('730');
    expect(textOf(dom, 'failures')).toBe('2');
    expect(textOf(dom, 'failing')).toBe('5');
    expect(textOf(dom, 'known-bugs')).toBe('1');
    expect(textOf(dom, 'seed')).toBe('4242');
    expect(textOf(dom, 'shard')).toBe('1/4');
    expect(textOf(dom, 'coverage-lines')).toBe('56.7%');
    expect(textOf(dom, 'cov-branches')).toBe('5/14');
    expect(dom).toContain('data-code="1"');
    for (const f of r.failures) {
      expect(dom).toContain(f.key);
      expect(dom).toContain(`<span class="count">${f.count}</span>`);
    }
    expect(dom).toContain('known bug compressed-overlap');
    expect(dom).toContain('/tmp/cases/case-a.json');
    // Charts, drawn by the page from the report it carries.
    const tp = canvas(dom, 'chart-throughput');
    expect(tp['data-rendered']).toBe('yes');
    expect(Number(tp['data-points'])).toBe(r.throughput.points.length);
    expect(Number(tp['data-total'])).toBe(r.volume.sequences);
    expect(Number(canvas(dom, 'chart-lengths')['data-total'])).toBe(r.volume.sequences);
    expect(Number(canvas(dom, 'chart-kinds')['data-total'])).toBe(r.volume.steps);
    expect(Number(canvas(dom, 'chart-kinds')['data-points'])).toBe(4);
    // Layout features: each sequence counted once per feature of its class.
    const features = Object.entries(r.volume.byLayout).reduce((n, [c, k]) => n + c.split(' ').length * k, 0);
    expect(Number(canvas(dom, 'chart-layouts')['data-total'])).toBe(features);
    expect(Number(canvas(dom, 'chart-coverage')['data-points'])).toBe(2);
    expect(Number(canvas(dom, 'chart-coverage')['data-total'])).toBe(60 + 50);
    // The Markdown beside it.
    expect(fs.readFileSync(paths.md, 'utf8')).toBe(reportMarkdown(r));
  }, 120_000);

  it('merges coverage hits as unions and failures by signature', () => {
    const a = sampleReport();
    const b = sampleReport();
    b.identity.shards = [{ index: 3, count: 4 }];
    b.indices = [[3, 3]];
    b.coverage = {
      files: {
        'src/image.ts': {
          lines: { total: 100, covered: 20, hit: '50-69' },
          branches: { total: 10, covered: 1, hit: ['9.1'] },
        },
      },
      total: { lines: { total: 100, covered: 20 }, branches: { total: 10, covered: 1 } },
    };
    b.failures = [
      {
        ...structuredClone(a.failures[0]),
        count: 1,
        firstIndex: 3,
        shrink: { status: 'full', steps: ['read -P 0x01 0 1'], ms: 1, case: '/tmp/cases/b.json' },
      },
    ];
    const m = mergeReports([a, b]);
    expect(m.coverage?.files['src/image.ts'].lines.covered).toBe(69);
    expect(m.coverage?.files['src/image.ts'].branches.covered).toBe(5);
    expect(m.failures[0].count).toBe(4);
    expect(m.failures[0].firstIndex).toBe(3);
    expect(m.failures[0].shrink?.steps).toEqual(['read -P 0x01 0 1']);
    expect(m.volume.sequences).toBe(28);
    expect(() => mergeReports([a, a])).toThrow(/two reports/);
  });
});
