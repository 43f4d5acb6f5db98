/**
 * Which qemu-iotests need only qemu-img and qemu-io: read each test's own declarations
 * (`_supported_fmt`/`_supported_proto` in bash tests, `supported_fmts=`/`supported_protocols=` in
 * python ones) and the programs it starts (a VM, qemu-nbd, the storage daemon), never a list of
 * names kept by hand.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Selection {
  /** test names as `check` takes them: "001", "tests/image-fleecing" */
  selected: string[];
  /** why each other test is left out */
  excluded: Map<string, string>;
}

/** Programs other than qemu-img/qemu-io, as bash and python tests start them. */
const OTHER_PROGRAMS: [RegExp, string][] = [
  [
    /common\.qemu|_launch_qemu|\$QEMU\b(?!_)|run_qemu|_qemu_wrapper|\bVM\(|iotests\.VM\b|qemu_prog\b/,
    'system emulator',
  ],
  [/QEMU_NBD|qemu_nbd|common\.nbd|nbd_server/, 'qemu-nbd'],
  [/\$QSD\b|QSD_PROG|QemuStorageDaemon|qsd_prog/, 'storage daemon'],
  [/common\.tls|tls_x509/, 'TLS'],
];

function wordsAfter(src: string, re: RegExp): string[] | undefined {
  const m = re.exec(src);
  if (!m) return undefined;
  return (m[1] ?? '')
    .replace(/#.*/, '')
    .replace(/['",[\]]/g, ' ')
    .split(/\s+/)
    .filter(Boolean);
}

/** Why a test cannot run with qemu-img and qemu-io alone on qcow2 over a file, or undefined. */
export function exclusionReason(src: string): string | undefined {
  const isPython = src.startsWith('#!/usr/bin/env python') || /^import iotests/m.test(src);
  const fmts = isPython
    ? wordsAfter(src, /supported_fmts\s*=\s*\[([^\]]*)\]/)
    : wordsAfter(src, /^_supported_fmt\s+(.*)$/m);
  if (fmts && !fmts.includes('qcow2') && !fmts.includes('generic')) return `formats ${fmts.join(' ')}`;
  const protos = isPython
    ? wordsAfter(src, /supported_protocols\s*=\s*\[([^\]]*)\]/)
    : wordsAfter(src, /^_supported_proto\s+(.*)$/m);
  if (protos && !protos.includes('file') && !protos.includes('generic'))
    return `protocols ${protos.join(' ')}`;
  // Drop comments before looking for program use, so a mention in prose does not count.
  const code = src
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n');
  for (const [re, what] of OTHER_PROGRAMS) if (re.test(code)) return `needs ${what}`;
  return undefined;
}

export function selectTests(iotestsDir: string): Selection {
  const names = [
    ...fs.readdirSync(iotestsDir).filter((n) => /^\d{3}$/.test(n)),
    ...fs
      .readdirSync(path.join(iotestsDir, 'tests'))
      .filter((n) => !n.includes('.'))
      .map((n) => `tests/${n}`),
  ].sort();
  const selected: string[] = [];
  const excluded = new Map<string, string>();
  for (const name of names) {
    const why = exclusionReason(fs.readFileSync(path.join(iotestsDir, name), 'utf8'));
    if (why) excluded.set(name, why);
    else selected.push(name);
  }
  return { selected, excluded };
}
