/**
 * The campaign report as one self-contained HTML page (no network): the tables are written here,
 * the charts are drawn in the page by Chart.js (inlined from node_modules) from the report's JSON,
 * which the page carries. Each chart's canvas gets `data-rendered`, `data-points` and `data-total`
 * once drawn, so a headless browser can check what it shows against the report.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { pct, shardText, type CampaignReport } from './report.ts';

const require = createRequire(import.meta.url);

let chartSource: string | undefined;
function chartJs(): string {
  // The UMD build is not in the package's exports: find it beside the package's main file.
  const main = require.resolve('chart.js');
  chartSource ??= fs.readFileSync(path.join(path.dirname(main), 'chart.umd.min.js'), 'utf8');
  return chartSource;
}

const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const num = (n: number): string => n.toLocaleString('en-US');
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** Text safe inside <script> (no `</script`, no `<!--`). */
const inScript = (s: string): string => s.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');

function table(head: string[], rows: string[][], cls = ''): string {
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

function card(label: string, value: string, id: string): string {
  return `<div class="card"><div class="value" id="${id}">${value}</div><div class="label">${esc(label)}</div></div>`;
}

const sorted = (m: Record<string, number>): [string, number][] =>
  Object.entries(m).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));

export function reportHtml(r: CampaignReport): string {
  const id = r.identity;
  const v = r.volume;
  const s = Math.max(r.timing.elapsedMs / 1000, 1e-3);
  const status = ['nothing new', 'new failures', 'the harness broke'][r.exitCode];
  const failing = r.failures.reduce((n, f) => n + f.count, 0);

  const identity = table(
    ['', ''],
    [
      ['tool', esc(`${id.tool} ${id.toolVersion}`)],
      ['git commit', `<code>${esc(id.gitCommit ?? 'unknown')}</code>`],
      ['implementation', esc(`${id.impl} ${id.implVersion}`)],
      ['task', esc(id.task)],
      ['seed', `<span id="seed">${esc(id.seed)}</span>`],
      ['shard', `<span id="shard">${esc(shardText(id.shards))}</span>`],
      [
        'options',
        `<code>${esc(
          Object.entries(id.options)
            .map(([k, x]) => `${k}=${JSON.stringify(x)}`)
            .join(' '),
        )}</code>`,
      ],
      ['host', esc(`${id.host.hostname}, ${id.host.cpus} cpus, node ${id.host.node}`)],
      ['started', esc(id.startedAt)],
      [
        'elapsed',
        `<span id="elapsed">${esc(secs(r.timing.elapsedMs))}</span>${r.timing.budgetMs !== null ? esc(` of a ${secs(r.timing.budgetMs)} budget`) : ''}, ${esc(r.timing.jobs)} job(s)`,
      ],
    ],
    'identity',
  );

  const cards = [
    card('sequences', num(v.sequences), 'sequences'),
    card('operations', num(v.operations), 'operations'),
    card('steps', num(v.steps), 'steps'),
    card('operations/s', num(Math.round(v.operations / s)), 'ops-per-s'),
    card('distinct failures', num(r.failures.length), 'failures'),
    card('failing sequences', num(failing), 'failing'),
    card('known bugs met', num(r.knownBugs.length), 'known-bugs'),
    card('engine lines covered', r.coverage ? pct(r.coverage.total.lines) : '–', 'coverage-lines'),
    card('engine branches covered', r.coverage ? pct(r.coverage.total.branches) : '–', 'coverage-branches'),
  ].join('');

  const failures =
    r.failures.length === 0
      ? '<p id="no-failures">No failures.</p>'
      : r.failures
          .map((f, i) => {
            const sig = f.signature;
            const shrink = f.shrink
              ? `${esc(f.shrink.status)}: ${esc(f.unshrunkSteps)} → <span class="shrunk-steps">${esc(f.shrink.steps.length)}</span> steps in ${esc(secs(f.shrink.ms))}`
              : `none (${esc(f.unshrunkSteps)} steps, not saved)`;
            return `<section class="failure${sig.knownBug ? ' known' : ''}" id="failure-${i}">
<h3>${esc(sig.oracle)} after <em>${esc(sig.command)}</em>: ${esc(sig.category)}${sig.knownBug ? ` <span class="badge">known bug ${esc(sig.knownBug)}</span>` : ' <span class="badge new">new</span>'}</h3>
${table(
  ['', ''],
  [
    ['signature', `<code class="signature">${esc(f.key)}</code>`],
    ['subject', esc(sig.subject)],
    ['count', `<span class="count">${esc(f.count)}</span>`],
    ['first seen', `${esc(secs(f.firstSeenMs))} into the campaign, sequence ${esc(f.firstIndex)}`],
    ['message', `<code>${esc(f.message)}</code>`],
    ['shrink', shrink],
    ['case', f.shrink?.case ? `<code class="case">${esc(f.shrink.case)}</code>` : '(not saved)'],
    ['script', f.shrink?.script ? `<code>${esc(f.shrink.script)}</code>` : '(none)'],
  ],
)}
${f.shrink && f.shrink.steps.length > 0 ? `<details open><summary>shrunk steps</summary><pre>${esc(f.shrink.steps.join('\n'))}</pre></details>` : ''}
</section>`;
          })
          .join('\n');

  const known =
    r.knownBugs.length === 0
      ? '<p>None met.</p>'
      : table(
          ['known bug', 'signature', 'count'],
          r.knownBugs.map((k) => [esc(k.id), `<code>${esc(k.key)}</code>`, esc(k.count)]),
        );

  const coverage = r.coverage
    ? `<p>Lines <b id="cov-lines">${esc(r.coverage.total.lines.covered)}/${esc(r.coverage.total.lines.total)}</b> (${esc(pct(r.coverage.total.lines))}), branches <b id="cov-branches">${esc(r.coverage.total.branches.covered)}/${esc(r.coverage.total.branches.total)}</b> (${esc(pct(r.coverage.total.branches))}) of src/, from Node's V8 coverage of the workers.</p>
<div class="chart" style="height: ${Math.max(300, 24 * Object.keys(r.coverage.files).length + 60)}px"><canvas id="chart-coverage"></canvas></div>
<details><summary>per file</summary>${table(
        ['file', 'lines', 'branches'],
        Object.entries(r.coverage.files).map(([f, x]) => [
          `<code>${esc(f)}</code>`,
          esc(`${x.lines.covered}/${x.lines.total} (${pct(x.lines)})`),
          esc(`${x.branches.covered}/${x.branches.total} (${pct(x.branches)})`),
        ]),
      )}</details>`
    : '<p>Not collected.</p>';

  const kinds = table(
    ['command kind', 'steps'],
    sorted(v.byKind).map(([k, n]) => [esc(k), `<span class="kind-count">${esc(n)}</span>`]),
  );
  const layouts = table(
    ['layout class', 'sequences'],
    sorted(v.byLayout)
      .slice(0, 40)
      .map(([k, n]) => [`<code>${esc(k)}</code>`, esc(n)]),
  );

  const data = inScript(JSON.stringify(r));
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(id.task)} campaign — ${esc(id.impl)} ${esc(id.implVersion)} — seed ${esc(id.seed)}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 1rem 1.5rem; color: #1d232b; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #d6dbe1; }
.status { display: inline-block; padding: .15rem .6rem; border-radius: .8rem; font-weight: 600; }
.status.s0 { background: #d9f2e0; color: #13632e; } .status.s1 { background: #fde2de; color: #8a1c0f; } .status.s2 { background: #fff1c2; color: #6b4d00; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .6rem; margin: 1rem 0; }
.card { background: #f4f6f8; border-radius: .5rem; padding: .6rem .8rem; }
.card .value { font-size: 1.4rem; font-weight: 600; } .card .label { color: #5a6572; font-size: .85rem; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { padding: .2rem .6rem; border-bottom: 1px solid #e7eaee; text-align: left; vertical-align: top; }
table.identity td:first-child { color: #5a6572; }
code { font: 12px/1.4 ui-monospace, monospace; word-break: break-all; }
pre { background: #f4f6f8; padding: .6rem; overflow-x: auto; font-size: 12px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5rem; } .chart { position: relative; height: 260px; } .chart.tall { height: 420px; }
.failure { border-left: 4px solid #c0392b; padding-left: .8rem; margin: 1rem 0; } .failure.known { border-color: #b7950b; }
.badge { font-size: .75rem; background: #fff1c2; padding: .1rem .4rem; border-radius: .4rem; } .badge.new { background: #fde2de; }
</style>
</head>
<body>
<h1>${esc(id.task)} campaign: ${esc(id.impl)} ${esc(id.implVersion)}</h1>
<p><span class="status s${r.exitCode}" id="exit-code" data-code="${r.exitCode}">exit ${r.exitCode}: ${esc(status)}</span>
&nbsp;seed ${esc(id.seed)}, shard ${esc(shardText(id.shards))}, ${esc(secs(r.timing.elapsedMs))}, ${esc(r.timing.jobs)} job(s)</p>
<div class="cards">${cards}</div>
<h2>Identity</h2>
${identity}
<h2>Volume</h2>
<div class="grid">
<div><h3>Throughput over time</h3><div class="chart"><canvas id="chart-throughput"></canvas></div></div>
<div><h3>Sequence lengths</h3><div class="chart"><canvas id="chart-lengths"></canvas></div></div>
<div><h3>Steps by command kind</h3><div class="chart"><canvas id="chart-kinds"></canvas></div>${kinds}</div>
<div><h3>Sequences by layout feature</h3><div class="chart tall"><canvas id="chart-layouts"></canvas></div><details><summary>by layout class</summary>${layouts}</details></div>
</div>
<h2>Failures (${esc(r.failures.length)} distinct, ${esc(failing)} failing sequences)</h2>
${failures}
<h2>Known bugs met</h2>
${known}
<h2>Engine code coverage</h2>
${coverage}
${r.problems.length > 0 ? `<h2>Harness problems</h2><ul id="problems">${r.problems.map((p) => `<li><pre>${esc(p)}</pre></li>`).join('')}</ul>` : ''}
${id.notes.length > 0 ? `<h2>Notes</h2><ul>${id.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : ''}
<script id="report-data" type="application/json">${data}</script>
<script>${inScript(chartJs())}</script>
<script>
(function () {
  var r = JSON.parse(document.getElementById('report-data').textContent);
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  function mark(id, chart) {
    var c = document.getElementById(id);
    var total = 0, points = 0;
    chart.data.datasets[0].data.forEach(function (x) { total += x; points += 1; });
    c.setAttribute('data-rendered', 'yes');
    c.setAttribute('data-points', String(points));
    c.setAttribute('data-total', String(Math.round(total * 1000) / 1000));
  }
  function draw(id, config) {
    var el = document.getElementById(id);
    if (!el) return;
    mark(id, new Chart(el, config));
  }
  var tp = r.throughput;
  draw('chart-throughput', {
    type: 'line',
    data: {
      labels: tp.points.map(function (p) { return p.t + ' s'; }),
      datasets: [
        { type: 'bar', label: 'sequences completed', data: tp.points.map(function (p) { return p.sequences; }), yAxisID: 'y', backgroundColor: 'rgba(44,123,229,0.55)', order: 2 },
        { label: 'operations/s', data: tp.points.map(function (p) { return p.operations / tp.bucketSeconds; }), yAxisID: 'y1', borderColor: '#e67e22', backgroundColor: '#e67e22', order: 1 }
      ]
    },
    options: { scales: { y: { beginAtZero: true, title: { display: true, text: 'sequences / ' + tp.bucketSeconds + ' s' } }, y1: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: 'operations/s' } } } }
  });
  var lens = Object.keys(r.lengths).map(Number);
  var max = lens.length ? Math.max.apply(null, lens) : 0;
  var width = Math.max(1, Math.ceil((max + 1) / 20));
  var bins = [];
  for (var b = 0; b * width <= max; b++) bins.push(0);
  Object.keys(r.lengths).forEach(function (k) { bins[Math.floor(Number(k) / width)] += r.lengths[k]; });
  draw('chart-lengths', {
    type: 'bar',
    data: { labels: bins.map(function (_, i) { return width === 1 ? String(i) : (i * width) + '–' + (i * width + width - 1); }), datasets: [{ label: 'sequences', data: bins, backgroundColor: '#2c7be5' }] },
    options: { plugins: { legend: { display: false } }, scales: { x: { title: { display: true, text: 'steps' } }, y: { beginAtZero: true, title: { display: true, text: 'sequences' } } } }
  });
  function entries(m) { return Object.keys(m).map(function (k) { return [k, m[k]]; }).sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : 1); }); }
  var kinds = entries(r.volume.byKind);
  draw('chart-kinds', {
    type: 'bar',
    data: { labels: kinds.map(function (e) { return e[0]; }), datasets: [{ label: 'steps', data: kinds.map(function (e) { return e[1]; }), backgroundColor: '#16a085' }] },
    options: { indexAxis: 'y', plugins: { legend: { display: false } } }
  });
  var features = {};
  Object.keys(r.volume.byLayout).forEach(function (cls) {
    cls.split(' ').forEach(function (f) { features[f] = (features[f] || 0) + r.volume.byLayout[cls]; });
  });
  var feats = entries(features);
  draw('chart-layouts', {
    type: 'bar',
    data: { labels: feats.map(function (e) { return e[0]; }), datasets: [{ label: 'sequences', data: feats.map(function (e) { return e[1]; }), backgroundColor: '#8e44ad' }] },
    options: { indexAxis: 'y', plugins: { legend: { display: false } }, scales: { y: { ticks: { autoSkip: false } } } }
  });
  if (r.coverage) {
    var files = Object.keys(r.coverage.files);
    function p(x) { return x.total ? Math.round(1000 * x.covered / x.total) / 10 : 0; }
    draw('chart-coverage', {
      type: 'bar',
      data: {
        labels: files.map(function (f) { return f.replace(/^src\\//, ''); }),
        datasets: [
          { label: 'lines %', data: files.map(function (f) { return p(r.coverage.files[f].lines); }), backgroundColor: '#2c7be5' },
          { label: 'branches %', data: files.map(function (f) { return p(r.coverage.files[f].branches); }), backgroundColor: '#e67e22' }
        ]
      },
      options: { indexAxis: 'y', scales: { x: { min: 0, max: 100 }, y: { ticks: { autoSkip: false } } } }
    });
  }
  document.body.setAttribute('data-charts', 'drawn');
})();
</script>
</body>
</html>
`;
}
