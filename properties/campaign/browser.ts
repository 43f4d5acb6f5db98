/**
 * Debian's headless chromium, for checking report pages the way people see them: the DOM after
 * the page's scripts ran, or a screenshot. No network, no profile left behind.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

async function chromium(args: string[]): Promise<string> {
  if (!fs.existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-chromium-'));
  try {
    const r = await execa(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, ...args], {
      timeout: 90_000,
      reject: false,
    });
    if (r.exitCode !== 0) throw new Error(`chromium exited ${String(r.exitCode)}: ${r.stderr}`);
    return r.stdout;
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

/** The page's DOM once loaded and its scripts have run. */
export function dumpDom(htmlFile: string): Promise<string> {
  return chromium(['--dump-dom', pathToFileURL(path.resolve(htmlFile)).href]);
}

export async function screenshot(htmlFile: string, png: string, width = 1280, height = 2600): Promise<void> {
  await chromium([
    `--window-size=${width},${height}`,
    `--screenshot=${path.resolve(png)}`,
    pathToFileURL(path.resolve(htmlFile)).href,
  ]);
}
