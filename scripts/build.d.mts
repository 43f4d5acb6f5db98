// Types of scripts/build.mjs (plain JavaScript so that it runs before anything is compiled).
export const ROOT: string;
export const DIST: string;
export const STAMP: string;
export const ENTRIES: Record<string, string>;
export function isStale(name?: string): boolean;
export function build(): Promise<void>;
