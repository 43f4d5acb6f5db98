/**
 * `qemu-img check` output in a divergence's `observed` text, which the known-bugs list
 * (properties/known-bugs/) matches its `errorText` against. QEMU prints one `Leaked cluster N …`
 * line per leaked cluster (compare_refcounts) before the `ERROR OFLAG_COPIED …` lines
 * (check_oflag_copied): a plain first-20-lines cut hid the one corruption line behind 92 leaks, so
 * the campaign labelled a known bug NEW while `repro` of its (shrunk, fewer leaks) case named it.
 * The per-cluster leak/repair lines therefore go last, and what is cut is counted.
 */

/** One cluster's leak or its repair: many of them, each telling little. */
const PER_CLUSTER = /^(?:Leaked cluster \d+|Repairing cluster \d+)/;

/** The lines of `qemu-img check` output joined with ` | `, errors and summaries before per-cluster leaks, at most `max`. */
export function checkOutputText(output: string, max = 20): string {
  const lines = output
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '');
  const first = lines.filter((l) => !PER_CLUSTER.test(l.trim()));
  const rest = lines.filter((l) => PER_CLUSTER.test(l.trim()));
  const kept = [...first, ...rest].slice(0, max);
  const cut = lines.length - kept.length;
  return `${kept.join(' | ')}${cut > 0 ? ` | … (${cut} more lines)` : ''}`;
}
