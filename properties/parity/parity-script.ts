/**
 * The lines a case script (cases/script-writer.ts) adds when its failure is a parity one: the
 * engine's `qcow2 check` / `qcow2 map` run beside `qemu-img check` / `qemu-img map` on the image
 * the steps made, compared as the oracles compare them (parity/engine-check-parity.ts,
 * engine-map-parity.ts). Other cases' scripts are unchanged (qemu-img and qemu-io alone).
 */
import type { DivergenceKind } from '../runner/divergence.ts';

/** Inside `check_image` (every oracle point): the two checkers' JSON, the file name aside. */
export function checkParityLines(kind: DivergenceKind, naming: string): string[] {
  if (kind !== 'check-parity') return [];
  const json = (tool: string): string =>
    `${tool} check --output=json ${naming} "$target" 2>&1 | grep -v '"filename"'`;
  return [
    `  diff <(${json('qemu-img')}) <(${json('npx qcow2')}) || fail "qcow2 check differs from qemu-img check ($1)"`,
  ];
}

/** At the end of the sequence: the two maps, exactly as the oracle compares them. */
export function mapParityLines(kind: DivergenceKind, naming: string): string[] {
  if (kind !== 'map-parity') return [];
  return [
    "# the engine's map beside qemu-img map, extent by extent",
    `diff <(qemu-img map --output=json ${naming} "$target") <(npx qcow2 map --output=json ${naming} "$target") || fail "qcow2 map differs from qemu-img map"`,
  ];
}
