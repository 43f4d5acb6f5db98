/**
 * `qcow2 diagnose [--output=human|json] [--html PATH] FILE`: what is wrong with an image, in words,
 * and a picture of its host file. Exit codes as check's: 0 nothing found, 2 corruptions, 3 leaks
 * only, 1 the image could not be read.
 */
import * as fs from 'node:fs';
import { diagnose } from '../diagnose/index.ts';
import { formatDiagnosisHuman, formatDiagnosisJson } from '../diagnose/report-text.ts';
import { renderDiagnosisHtml } from '../diagnose/report-html.ts';
import { FileDevice } from '../io/device.ts';
import { getopt, last, outputFormat, UsageError } from './args.ts';
import type { Io } from './common.ts';

export async function cmdDiagnose(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':h', [
    { name: 'output', arg: 'required' },
    { name: 'html', arg: 'required' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const output = outputFormat(p);
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const dev = FileDevice.open(p.operands[0]!, { readOnly: true });
  try {
    const d = diagnose(dev);
    io.out(output === 'json' ? formatDiagnosisJson(d) : formatDiagnosisHuman(d));
    const html = last(p, 'html');
    if (html !== undefined) fs.writeFileSync(html, renderDiagnosisHtml(d));
    if (d.version === undefined) return 1;
    return d.corruptions > 0 ? 2 : d.leaks > 0 ? 3 : 0;
  } finally {
    dev.close();
  }
}
