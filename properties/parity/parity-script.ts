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

/** At the end of the sequence: the two maps, compared on the metadata (`onMetadata`). */
export function mapParityLines(kind: DivergenceKind, naming: string): string[] {
  if (kind !== 'map-parity') return [];
  const normalise =
    'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{const o=[];' +
    'for(const e of JSON.parse(s)){const x={start:e.start,length:e.length,depth:e.depth,present:e.present,zero:e.data?false:e.zero,data:e.data,offset:e.offset};' +
    'const p=o[o.length-1];if(p&&(p.offset===undefined?x.offset===undefined:p.offset+p.length===x.offset)&&["depth","present","zero","data"].every((k)=>p[k]===x[k]))p.length+=x.length;else o.push(x);}' +
    'for(const e of o)console.log(JSON.stringify(e));})';
  return [
    "# the engine's map beside qemu-img map (a data extent's zero flag from host-file holes dropped, neighbours merged)",
    `mapnorm() { node -e '${normalise}'; }`,
    `diff <(qemu-img map --output=json ${naming} "$target" | mapnorm) <(npx qcow2 map --output=json ${naming} "$target" | mapnorm) || fail "qcow2 map differs from qemu-img map"`,
  ];
}
