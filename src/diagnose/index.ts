/**
 * `qcow2 diagnose`: what is wrong with an image, where, and which guest data it hurts. The walk
 * (ownership.ts) records who owns every host cluster; findings.ts turns that into findings; the
 * picture (picture.ts) and the reports (report-text.ts, report-html.ts) show them.
 */
import type { BlockDevice } from '../io/device.ts';
import { walkOwnership, type OwnershipMap } from './ownership.ts';
import { findingsOf, type Finding } from './findings.ts';
import { pictureOf, type Picture } from './picture.ts';

export interface Diagnosis {
  file: string;
  fileSize: number;
  clusterSize: number;
  version?: number;
  virtualSize?: number;
  refcountBits?: number;
  snapshots: string[];
  findings: Finding[];
  corruptions: number;
  leaks: number;
  picture: Picture;
}

export function diagnose(dev: BlockDevice): Diagnosis {
  const map: OwnershipMap = walkOwnership(dev);
  const findings = findingsOf(dev, map);
  const h = map.header;
  return {
    file: dev.name,
    fileSize: map.fileSize,
    clusterSize: map.clusterSize,
    version: h?.version,
    virtualSize: h?.size,
    refcountBits: h ? 2 ** h.refcountOrder : undefined,
    snapshots: map.snapshots.map((s) => s.name),
    findings,
    corruptions: findings.filter((f) => f.severity === 'corruption').length,
    leaks: findings.filter((f) => f.severity === 'leak').length,
    picture: pictureOf(map, findings),
  };
}

export type { Finding } from './findings.ts';
export type { Picture } from './picture.ts';
