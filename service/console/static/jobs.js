/* Jobs: POST /v1/jobs/score (multipart), POST /v1/jobs/train (JSON, Bearer key), GET /v1/jobs/{id}
 * polled for progress (rows_scored / rows_total, the growing training curve), GET /v1/jobs (key)
 * for the recent list and POST /v1/jobs/{id}:cancel to cancel; /readyz for the workers alive. Both jobs target the header picker's model;
 * the retrain form may name a new one. */
'use strict';

(() => {
  const {api, showError, el, when, key, model} = Console;
  const $ = id => document.getElementById(id);
  const FINAL = ['finished', 'failed', 'canceled'];
  const POLL_MS = 250;

  /* Poll a job's status until it ends, calling onStatus with each answer. */
  async function follow(jobId, onStatus, errorBox) {
    for (;;) {
      let status;
      try {
        status = await api(`/v1/jobs/${jobId}`, {auth: true});
      } catch (error) {
        showError(errorBox, error);
        return;
      }
      onStatus(status);
      if (FINAL.includes(status.status)) return status;
      await new Promise(resolve => setTimeout(resolve, POLL_MS));
    }
  }

  $('score-form').addEventListener('submit', async event => {
    event.preventDefault();
    showError('score-error', null);
    const file = $('score-file').files[0];
    if (!file) { showError('score-error', 'choose a CSV file first'); return; }
    const form = new FormData();
    form.append('file', file);
    if ($('score-probabilities').checked) form.append('probabilities', 'true');
    const button = $('score-submit'), bar = $('score-progress');
    button.disabled = true;
    try {
      const accepted = await api('/v1/jobs/score?model=' + encodeURIComponent(model),
                                 {method: 'POST', body: form, auth: true});
      $('score-status').hidden = false;
      $('score-result').hidden = true;
      bar.dataset.job = accepted.job_id;
      bar.dataset.seen = '';
      await follow(accepted.job_id, status => {
        const total = status.rows_total || 0, done = status.rows_scored || 0;
        bar.max = total || 1;
        bar.value = total ? done : status.progress;
        bar.dataset.seen += (bar.dataset.seen ? ',' : '') + done;  // what the page saw, for its tests
        $('score-rows').textContent = `${done} / ${total || '?'} rows`;
        $('score-stage').textContent = status.status === 'failed' ? 'failed: ' + status.error : status.stage;
        if (status.status === 'failed' || status.status === 'canceled') showError('score-error', status.error);
        if (status.result_url) {
          $('score-download').href = status.result_url;
          $('score-result').hidden = false;
        }
      }, 'score-error');
    } catch (error) {
      showError('score-error', error);
    } finally {
      button.disabled = false;
      refresh();
    }
  });

  function drawCurve(curve) {
    const series = (k, name, dashed) => ({name, dashed, points: curve.map(c => [c.epoch, c[k]])});
    Charts.lineChart($('train-curve'), [series('train_loss', 'train loss'), series('dev_loss', 'dev loss', true),
                                        series('dev_accuracy', 'dev accuracy')], {yLabel: 'loss / accuracy', yMin: 0});
    $('train-curve').dataset.points = curve.length;
  }

  $('train-form').addEventListener('submit', async event => {
    event.preventDefault();
    showError('train-error', null);
    const hidden = $('train-hidden').value.split(/[\s,]+/).filter(Boolean).map(Number);
    const body = {dataset: $('train-dataset').value.trim(), promote: $('train-promote').value,
                  model: $('train-model').value.trim() || model,
                  config: {hidden, epochs: Number($('train-epochs').value), lr: Number($('train-lr').value)}};
    const devDataset = $('train-dev-dataset').value.trim();
    if (devDataset) body.dev_dataset = devDataset;
    const button = $('train-submit');
    button.disabled = true;
    try {
      const accepted = await api('/v1/jobs/train', {method: 'POST', json: body, auth: true});
      $('train-status').hidden = false;
      $('train-curve').dataset.job = accepted.job_id;
      drawCurve([]);
      refresh();
      await follow(accepted.job_id, status => {
        const curve = status.curve || (status.last_epoch ? [status.last_epoch] : []);
        drawCurve(curve);
        $('train-stage').textContent = `${status.status}: ${status.error || status.stage}` +
          (status.promotion_reason ? ` (${status.promotion_reason})` : '');
        if (status.status === 'failed') showError('train-error', status.error);
      }, 'train-error');
    } catch (error) {
      showError('train-error', error);
    } finally {
      button.disabled = false;
      refresh();
    }
  });

  async function cancel(jobId, errorCell) {
    try {
      await api(`/v1/jobs/${jobId}:cancel`, {method: 'POST', auth: true});
      refresh();
    } catch (error) {
      showError(errorCell, error);
    }
  }

  /* How many job workers are alive (RQ's registry, through /readyz): with none, jobs wait. */
  async function workers() {
    try {
      const ready = await (await fetch('/readyz')).json();
      const count = ready.workers ? ready.workers.alive : null;
      $('job-workers').textContent = count === null ? 'Job workers: unknown (' + (ready.redis_error || 'Redis') + ')'
        : count === 1 ? '1 job worker is running.' : count + ' job workers are running.';
      $('job-workers').className = count ? 'muted' : 'error';
      if (ready.workers_error) $('job-workers').textContent += ' ' + ready.workers_error + '.';
    } catch (error) {
      showError('job-workers', error);
    }
  }

  /* The model a job scored with (and the version it pinned) or trained into (and the version it
   * published): GET /v1/jobs carries both in each job's status. */
  function modelOf(job) {
    if (!job.model) return '–';
    const version = job.type === 'train' ? job.produced_version : job.model_version;
    return job.model + (version ? (job.type === 'train' ? ' → v' : ' v') + version : '');
  }

  async function refresh() {
    workers();
    const body = $('recent').tBodies[0];
    if (!key()) {
      showError('recent-error', null);
      body.replaceChildren(el('tr', {}, el('td', {colspan: 7, class: 'muted',
        text: 'Type the API key above to list recent jobs (GET /v1/jobs hands job ids to key holders only).'})));
      return;
    }
    try {
      const {jobs} = await api('/v1/jobs?limit=20', {auth: true});
      showError('recent-error', null);
      body.replaceChildren(...jobs.map(job => {
        const errorCell = el('span', {class: 'error'});
        const action = FINAL.includes(job.status) ? (job.result_url ? el('a', {href: job.result_url, text: 'result', download: ''}) : '')
          : el('button', {type: 'button', class: 'secondary', text: 'Cancel',
                          'aria-label': 'Cancel job ' + job.job_id, onclick: () => cancel(job.job_id, errorCell)});
        return el('tr', {'data-job': job.job_id},
          el('td', {}, el('code', {text: job.job_id.slice(0, 8), title: job.job_id})), el('td', {text: job.type}),
          el('td', {class: 'model', text: modelOf(job)}),
          el('td', {class: 'status-' + job.status, text: job.status + (job.error ? ': ' + job.error : '')}),
          el('td', {class: 'wide-only', text: Math.round(job.progress * 100) + '%'}),
          el('td', {class: 'wide-only', text: when(job.created_at)}),
          el('td', {}, action, errorCell));
      }));
      if (!jobs.length) body.replaceChildren(el('tr', {}, el('td', {colspan: 7, class: 'muted', text: 'no jobs yet'})));
    } catch (error) {
      showError('recent-error', error);
    }
  }

  $('refresh').addEventListener('click', refresh);
  $('api-key').addEventListener('change', refresh);
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 5000);
})();
