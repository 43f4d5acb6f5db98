/** Types of share-interop.mjs (plain JavaScript, run before anything is compiled). */
export interface RawSourceMap {
  mappings: string;
  [key: string]: unknown;
}
export const SHARED: string;
export function decodeVlq(s: string): number[];
export function encodeVlq(nums: number[]): string;
export function shiftMappings(mappings: string, line: number, column: number, n: number): string;
export function shareInteropWrappers<M extends RawSourceMap>(
  code: string,
  map: M,
): { code: string; map: M; shared: boolean };
