/**
 * The check signature of an image: what `qemu-img check` says about it, reduced to what a
 * reproduction must match — the exit code, the categories it counts (corruptions, leaks, check
 * errors) and the kinds of its message lines (numbers and offsets taken out). `qcow2 repro IMAGE`
 * searches for a sequence whose image has the same signature.
 */
import { qemuImg } from '../qemu/qemu-img.ts';

export interface CheckSignature {
  exit: number;
  categories: string[];
  /** Distinct message kinds, sorted: `ERROR OFLAG_COPIED data cluster: l2_entry=N refcount=N`. */
  messageKinds: string[];
}

/** A message line without its numbers: what kind of finding it is. */
export function messageKind(line: string): string {
  return line
    .replace(/0x[0-9a-f]+/gi, 'N')
    .replace(/\b[0-9a-f]{8,}\b/gi, 'N')
    .replace(/\b\d+\b/g, 'N')
    .replace(/'[^']*'/g, "'S'")
    .trim();
}

/** Lines qemu-img check prints that describe the image (not the summary text around them). */
function findingLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => l.replace(/^qemu-img: /, '').trim())
    .filter((l) => l.length > 0 && !/^(Leaked clusters|This means waste|Data may be corrupted)/.test(l));
}

export function signatureFromCheck(
  exit: number,
  json: Record<string, unknown> | undefined,
  stderr: string,
): CheckSignature {
  const categories = ['corruptions', 'leaks', 'check-errors'].filter(
    (k) => typeof json?.[k] === 'number' && (json[k] as number) > 0,
  );
  return { exit, categories, messageKinds: [...new Set(findingLines(stderr).map(messageKind))].sort() };
}

export async function checkSignatureOf(
  file: string,
  extraArgs: readonly string[] = [],
): Promise<CheckSignature> {
  const r = await qemuImg(['check', '--output=json', ...extraArgs, file]);
  let json: Record<string, unknown> | undefined;
  try {
    json = r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return signatureFromCheck(r.exitCode, json, r.stderr);
}

export function sameSignature(a: CheckSignature, b: CheckSignature): boolean {
  return (
    a.exit === b.exit &&
    a.categories.join(',') === b.categories.join(',') &&
    a.messageKinds.join('\n') === b.messageKinds.join('\n')
  );
}

export function describeSignature(s: CheckSignature): string {
  const what = s.categories.length ? s.categories.join(' + ') : 'clean';
  return `qemu-img check exit ${s.exit} (${what}): ${s.messageKinds.join(' | ') || 'no messages'}`;
}
