/**
 * `qcow2 diagnose --html`: one self-contained page (no network): the findings in words, and the
 * host file as a grid of cells coloured by owner, findings outlined, owners and guest mapping on
 * hover. The data sits in the page as JSON; a small script draws the grid from it.
 */
import type { Diagnosis } from './index.ts';
import { describeRange } from './findings.ts';

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const COLOURS: Record<string, string> = {
  free: '#f1f1f1',
  header: '#5b6abf',
  l1: '#8e5bbf',
  l2: '#b07cd8',
  refcount: '#3f9c8f',
  snapshot: '#c49a2c',
  data: '#7fb7e6',
  compressed: '#2f79b5',
  bitmap: '#9bbf5b',
  crypto: '#777777',
  leaked: '#f2b8b5',
  'doubly-owned': '#d62728',
  'beyond-end': '#222222',
};

export function renderDiagnosisHtml(d: Diagnosis): string {
  const findings = d.findings
    .map(
      (
        f,
        i,
      ) => `<li class="finding ${f.severity}" id="f${i}"><b>[${i + 1}] ${esc(f.severity)} ${esc(f.code)}</b>: ${esc(f.title)}
<ul>${f.details.map((l) => `<li>${esc(l)}</li>`).join('')}${
        f.readsWrong?.length
          ? `<li class="wrong">Reads wrong: ${esc(f.readsWrong.map(describeRange).join(', '))}</li>`
          : ''
      }${f.atRisk?.length ? `<li>At risk: ${esc(f.atRisk.map(describeRange).join(', '))}</li>` : ''}</ul></li>`,
    )
    .join('\n');
  const legend = Object.entries(COLOURS)
    .map(([k, c]) => `<span class="key"><i style="background:${c}"></i>${esc(k)}</span>`)
    .join(' ');
  const data = JSON.stringify({
    picture: d.picture,
    colours: COLOURS,
    titles: d.findings.map((f) => `${f.code}: ${f.title}`),
  }).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qcow2 diagnose: ${esc(d.file)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} .summary{font-size:1.1em}
#grid{display:grid;grid-template-columns:repeat(var(--cols),var(--cell));gap:1px;margin:1em 0}
#grid div{width:var(--cell);height:var(--cell);border-radius:2px;cursor:default}
#grid div.flag{outline:2px solid #d62728;outline-offset:-1px}
.key{margin-right:1em;white-space:nowrap} .key i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.finding.corruption>b{color:#b00} .finding.leak>b{color:#a60} .wrong{color:#b00;font-weight:600}
#tip{position:fixed;display:none;background:#fff;border:1px solid #888;padding:6px 8px;max-width:520px;box-shadow:0 2px 8px #0003;font-size:12px;pointer-events:none}
</style></head><body>
<h1>qcow2 diagnose: ${esc(d.file)}</h1>
<p class="summary">qcow2 v${d.version ?? '?'} · ${d.virtualSize ?? '?'} bytes virtual · ${d.clusterSize}-byte clusters · file ${d.fileSize} bytes ·
<b id="corruptions">${d.corruptions}</b> corruptions · <b id="leaks">${d.leaks}</b> leaks</p>
<h2>Host file</h2>
<p>One cell per ${d.picture.clustersPerCell === 1 ? 'cluster' : `${d.picture.clustersPerCell} clusters`}, in file order; outlined cells carry findings. Hover for owners.</p>
<div>${legend}</div>
<div id="grid" style="--cols:${d.picture.cells.length <= 512 ? 32 : 64};--cell:${d.picture.cells.length <= 512 ? 24 : 14}px"></div>
<h2>Findings</h2>
<ol id="findings" style="list-style:none;padding:0">${findings || '<li>No problems found.</li>'}</ol>
<div id="tip"></div>
<script type="application/json" id="data">${data}</script>
<script>
const D = JSON.parse(document.getElementById('data').textContent);
const grid = document.getElementById('grid'), tip = document.getElementById('tip');
const cs = D.picture.clusterSize;
for (const c of D.picture.cells) {
  const el = document.createElement('div');
  el.style.background = D.colours[c.class];
  el.dataset.class = c.class;
  if (c.findings.length) el.className = 'flag';
  el.addEventListener('mousemove', (e) => {
    const first = '0x' + (c.cluster * cs).toString(16);
    const lines = ['host ' + first + (c.count > 1 ? ' (+' + (c.count - 1) + ' clusters)' : '') + ': ' + c.class]
      .concat(c.owners, c.more ? ['… ' + c.more + ' more'] : [], c.findings.map((i) => '⚠ ' + D.titles[i]));
    tip.textContent = '';
    for (const l of lines) { const p = document.createElement('div'); p.textContent = l; tip.appendChild(p); }
    tip.style.display = 'block'; tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
  });
  el.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
  el.addEventListener('click', () => { if (c.findings.length) document.getElementById('f' + c.findings[0]).scrollIntoView(); });
  grid.appendChild(el);
}
document.body.dataset.cells = String(D.picture.cells.length);
</script></body></html>
`;
}
