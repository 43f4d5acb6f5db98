import type { CampaignReport } from './report.ts';
export function reportHtml(r: CampaignReport): string {
  return `<!doctype html><pre>${JSON.stringify(r)}</pre>`;
}
