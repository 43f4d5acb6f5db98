/**
 * What this repository's engine supports, declared: the capability probe (engine.ts) may confirm
 * it, never narrow it. A probe that sees `create` throw can not tell a feature the engine lacks from
 * a feature the engine breaks: before this floor, an engine whose 4-bit refcount setter was wrong
 * (create fails: "REFCOUNT_OVERLAP") or whose AES key-size check refused 256-bit keys simply had no
 * such layouts in its campaigns, and every campaign passed (mutation testing: src/format/tables.ts,
 * src/crypto/ survivors). A declared feature the probe refuses stays in the layouts, so the runs
 * meet the failure at `create` and report it as a case, and the refusal is named in the notes.
 */
import type { Capabilities } from './adapter.ts';

/** The engine's features (README: formats, widths, encryption, snapshots, bitmaps, …). */
export const ENGINE_DECLARED = {
  compat: ['0.10', '1.1'],
  clusterBits: { min: 9, max: 21 },
  refcountBits: [1, 2, 4, 8, 16, 32, 64],
  extendedL2: true,
  compressionTypes: ['zlib', 'zstd'],
  lazyRefcounts: true,
  backingFile: true,
  backingMinClusterBits: 9,
  encryptMinClusterBits: 9,
  encryption: ['aes', 'luks'],
  compressedWrite: true,
  snapshots: true,
  resize: true,
  bitmaps: true,
  aioWrite: true,
  rebaseCommit: true,
  vmState: true,
  amend: true,
} as const satisfies Partial<Capabilities>;

/**
 * The probed capabilities raised to the declared ones. Each declared feature the probe left out is
 * put back and named in `notes` ("declared, refused by the probe: …"), with what the probe saw.
 */
export function keepDeclared(probed: Capabilities, notes: string[]): Capabilities {
  const out: Capabilities = { ...probed };
  const back = (what: string): void => {
    const seen = notes.filter((n) => n.startsWith(what)).join('; ');
    notes.push(
      `declared, refused by the probe (kept in the layouts, so the runs report it): ${what}${seen ? ` — ${seen}` : ''}`,
    );
  };
  const union = <T>(name: string, have: readonly T[], want: readonly T[]): T[] => {
    const missing = want.filter((v) => !have.includes(v));
    for (const v of missing) back(`${name} ${String(v)}`);
    return [...want, ...have.filter((v) => !want.includes(v))];
  };
  const d = ENGINE_DECLARED;
  out.compat = union('compat', probed.compat, d.compat);
  out.refcountBits = union('refcount_bits', probed.refcountBits, d.refcountBits);
  out.compressionTypes = union('compression', probed.compressionTypes, d.compressionTypes);
  out.encryption = union('encryption', probed.encryption, d.encryption);
  if (probed.clusterBits.min > d.clusterBits.min || probed.clusterBits.max < d.clusterBits.max) {
    back(
      `cluster_bits ${d.clusterBits.min}-${d.clusterBits.max} (probed ${probed.clusterBits.min}-${probed.clusterBits.max})`,
    );
    out.clusterBits = {
      min: Math.min(probed.clusterBits.min, d.clusterBits.min),
      max: Math.max(probed.clusterBits.max, d.clusterBits.max),
    };
  }
  for (const k of ['backingMinClusterBits', 'encryptMinClusterBits'] as const) {
    const p = probed[k];
    if (p === undefined || p > d[k]) {
      back(`${k} ${d[k]} (probed ${String(p)})`);
      out[k] = d[k];
    }
  }
  const flags = [
    'extendedL2',
    'lazyRefcounts',
    'backingFile',
    'compressedWrite',
    'snapshots',
    'resize',
    'bitmaps',
    'aioWrite',
    'rebaseCommit',
    'vmState',
    'amend',
  ] as const;
  for (const k of flags) {
    if (d[k] && probed[k] !== true) {
      back(k);
      out[k] = true;
    }
  }
  return out;
}
