/* Health: /readyz, GET /v1/models/{name} and the app's own Prometheus /metrics, polled every 2 s.
 * Request rate is the change of mnist_http_requests_total between two polls; latency quantiles are
 * interpolated inside the histogram's buckets, as Prometheus's histogram_quantile does. */
'use strict';

(() => {
  const {api, showError, el, model, modelPath, modelMissing} = Console;
  const $ = id => document.getElementById(id);
  const history = [];
  let previous = null, started = performance.now();

  /* Prometheus text format -> [{name, labels, value}] (comments skipped). */
  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const match = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
      if (!match) continue;
      const labels = {};
      for (const [, k, v] of (match[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
      samples.push({name: match[1], labels, value: Number(match[3])});
    }
    return samples;
  }

  /* histogram_quantile over cumulative buckets [[le, count], ...]. */
  function quantile(q, buckets) {
    buckets = buckets.slice().sort((a, b) => a[0] - b[0]);
    const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
    if (!total) return null;
    const rank = q * total;
    let lowerLe = 0, lowerCount = 0;
    for (const [le, count] of buckets) {
      if (count >= rank) {
        if (le === Infinity) return lowerLe;  // beyond the last finite bucket: its bound is the best we know
        return lowerLe + (le - lowerLe) * (count > lowerCount ? (rank - lowerCount) / (count - lowerCount) : 1);
      }
      lowerLe = le; lowerCount = count;
    }
    return lowerLe;
  }

  /* A route as text with a line-break opportunity after each '/' and before a ':verb': on a phone
   * the column stays narrow and wraps between path segments, not inside a word. */
  function breakable(route) {
    return route.split(/(?<=\/)|(?=:)/).flatMap((part, i) => i ? [document.createElement('wbr'), part] : [part]);
  }

  function ms(seconds) { return seconds === null ? '–' : (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1) + ' ms'; }

  async function readiness() {
    const response = await fetch('/readyz');
    const body = await response.json();
    $('ready').textContent = body.status;
    $('ready').className = 'stat ' + (body.status === 'ready' ? 'ok' : 'error');
    // /readyz answers for the default model and lists the others under "models".
    const mine = body.model === model ? body : (body.models || {})[model] || {};
    $('ready-detail').textContent = `${model} serves v${mine.serving_version ?? '–'} · ` +
      `Redis ${body.redis ? 'answers' : body.redis_error}` + (mine.error ? ' · ' + mine.error : '') +
      (body.model_error ? ' · ' + body.model_error : '');
    // RQ's worker registry: how many job workers are alive, per queue; none means jobs wait.
    const workers = body.workers;
    $('job-workers').textContent = workers ? String(workers.alive) : '–';
    $('job-workers').className = 'stat ' + (workers && workers.alive ? 'ok' : 'error');
    $('job-workers-detail').textContent = body.workers_error || (workers
      ? Object.entries(workers.queues).map(([queue, count]) => `${queue} ${count}`).join(' · ')
      : 'unknown: Redis ' + body.redis_error);
  }

  async function poll() {
    try {
      await readiness();
      // An unknown model has no production version; the header's alert says why, and the server-wide
      // figures below are worth showing all the same.
      const info = await api(modelPath).catch(error => { if (modelMissing(error)) return null; throw error; });
      $('production').textContent = !info ? '–' : info.production_version ? 'v' + info.production_version : 'none';
      const text = await api('/metrics');
      const samples = parseMetrics(text), now = performance.now();
      // One gauge per worker and model: the picked model's rows first, then the others'.
      const workers = samples.filter(s => s.name === 'mnist_model_version_served')
        .sort((a, b) => (b.labels.model === model) - (a.labels.model === model) ||
                        String(a.labels.model).localeCompare(String(b.labels.model)) || a.labels.pid - b.labels.pid);
      $('workers').tBodies[0].replaceChildren(...workers.map(s =>
        el('tr', {class: s.labels.model === model ? 'picked' : null, 'data-model': s.labels.model},
           el('td', {text: s.labels.model || '–'}), el('td', {text: s.labels.pid || '–'}), el('td', {text: 'v' + s.value}))));
      const requests = samples.filter(s => s.name === 'mnist_http_requests_total');
      const total = requests.reduce((sum, s) => sum + s.value, 0);
      if (previous) {
        const rate = (total - previous.total) / ((now - previous.at) / 1000);
        history.push([(now - started) / 1000, rate]);
        if (history.length > 60) history.shift();
        $('rate').textContent = rate.toFixed(1);
        Charts.lineChart($('rate-chart'), [{name: 'requests per second', points: history}],
                         {xLabel: 'seconds since this page opened', yLabel: 'req/s', yMin: 0});
      }
      previous = {total, at: now};
      const rows = new Map(), all = new Map();
      for (const s of samples) {
        if (!s.name.startsWith('mnist_http_request')) continue;
        const id = `${s.labels.endpoint} ${s.labels.method}`;
        const row = rows.get(id) || {endpoint: s.labels.endpoint, method: s.labels.method, count: 0, errors: 0, sum: 0,
                                     buckets: new Map()};
        rows.set(id, row);
        if (s.name === 'mnist_http_requests_total') {
          row.count += s.value;
          if (+s.labels.status >= 400) row.errors += s.value;
        } else if (s.name === 'mnist_http_request_duration_seconds_sum') {
          row.sum += s.value;
        } else if (s.name === 'mnist_http_request_duration_seconds_bucket') {
          const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
          row.buckets.set(le, (row.buckets.get(le) || 0) + s.value);
          all.set(le, (all.get(le) || 0) + s.value);
        }
      }
      $('p95').textContent = ms(quantile(0.95, [...all.entries()]));
      $('endpoints').tBodies[0].replaceChildren(...[...rows.values()].sort((a, b) => b.count - a.count).map(r =>
        el('tr', {}, el('td', {}, el('code', {}, ...breakable(`${r.method} ${r.endpoint}`))),
           el('td', {class: 'num', text: String(r.count)}), el('td', {class: 'num', text: String(r.errors)}),
           el('td', {class: 'num wide-only', text: ms(r.count ? r.sum / r.count : null)}),
           el('td', {class: 'num', text: ms(quantile(0.95, [...r.buckets.entries()]))}))));
      showError('health-error', null);
    } catch (error) {
      showError('health-error', error);
    }
  }

  poll();
  setInterval(() => { if (!document.hidden) poll(); }, 2000);
})();
