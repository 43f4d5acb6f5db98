/**
 * `qcow2 repro IMAGE [--impl qemu-io|engine|mixed] [--seconds N] [--seed S] [--jobs N] [--out DIR]
 * [--max-steps N]`: how could an image like this come to be? Reads the image's layout and its
 * check signature, runs a targeted campaign from fresh images of that layout (command mix weighted
 * by what the image holds) until a sequence leaves an image with the same signature, shrinks the
 * first hit and saves it as a case whose script makes such an image with qemu-img/qemu-io alone.
 *
 * Exit codes: 0 a recipe was found, 1 none within the budget (or the image is clean), 2 usage or
 * environment errors.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { isImplementationName } from '../adapters/registry.ts';
import { runCampaign } from '../runner/campaign.ts';
import { progressPrinter } from '../campaign/progress.ts';
import { profileImage, searchWeights } from './image-profile.ts';
import { checkSignatureOf, describeSignature } from './check-signature.ts';
import { describeLayout } from '../layout.ts';

export const REPRO_IMAGE_USAGE =
  'usage: qcow2 repro IMAGE [--impl qemu-io|engine|mixed] [--seconds N] [--seed S] [--jobs N] [--out DIR] [--max-steps N]';

export async function runReproImage(
  argv: string[],
  write = (s: string): void => void process.stdout.write(s),
): Promise<number> {
  // `--seconds` counts from here: profiling the image and its check signature included.
  const startedAt = Date.now();
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      impl: { type: 'string' },
      seconds: { type: 'string' },
      seed: { type: 'string' },
      jobs: { type: 'string' },
      out: { type: 'string' },
      'max-steps': { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  const image = positionals[0];
  const impl = values.impl ?? 'qemu-io';
  if (!image || positionals.length !== 1) throw new Error('exactly one image');
  if (!isImplementationName(impl)) throw new Error(`--impl must be engine, qemu-io or mixed, got '${impl}'`);
  const num = (v: string | undefined, d: number, name: string): number => {
    if (v === undefined) return d;
    if (!/^-?\d+$/.test(v)) throw new Error(`--${name} needs an integer, got '${v}'`);
    return Number(v);
  };
  const seconds = num(values.seconds, 300, 'seconds');
  const seed = num(values.seed, 1, 'seed');
  const jobs = num(values.jobs, os.availableParallelism(), 'jobs');
  const maxSteps = num(values['max-steps'], 12, 'max-steps');
  const outDir = values.out ?? 'repro-out';

  const profile = profileImage(image);
  const target = await checkSignatureOf(image);
  write(`image: ${image}\n  layout: ${describeLayout(profile.layout)}\n`);
  write(
    `  holds: ${profile.dataClusters} data, ${profile.compressedClusters} compressed, ${profile.zeroClusters} zero clusters, ${profile.snapshots} snapshots\n`,
  );
  write(`  target: ${describeSignature(target)}\n`);
  if (target.exit === 0) {
    write('the image is clean: there is no damage to reproduce\n');
    return 1;
  }
  const weights = searchWeights(profile);
  const printer = progressPrinter(process.stderr, `repro ${impl}`);
  const report = await runCampaign({
    task: {
      name: 'repro',
      options: { impl, seed, maxSteps, layout: profile.layout, weights, target, outDir },
    },
    seed,
    seconds,
    startedAt,
    jobs,
    outDir,
    stopAfterFailures: 1,
    onProgress: (p) => printer.update(p),
    reportOptions: { image, impl, seconds, maxSteps },
  });
  printer.done();
  const hit = report.failures[0];
  write(
    `searched ${report.volume.sequences} sequences (${report.volume.operations} operations) in ${(report.timing.elapsedMs / 1000).toFixed(0)} s\n`,
  );
  if (!hit?.shrink) {
    write('no sequence produced that signature within the budget\n');
    return 1;
  }
  write(
    `found a recipe of ${hit.shrink.steps.length} steps (${hit.shrink.status === 'full' ? 'shrunk' : 'shrinking cut short by the budget'}):\n`,
  );
  for (const s of hit.shrink.steps) write(`  ${s}\n`);
  if (hit.shrink.case) write(`case: ${hit.shrink.case}\nscript: ${hit.shrink.script ?? ''}\n`);
  if (hit.shrink.script && fs.existsSync(hit.shrink.script))
    write('(the script makes the image with qemu-img/qemu-io and prints qemu-img check)\n');
  return 0;
}
