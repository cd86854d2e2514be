/* Models: GET /v1/models/{name} (versions, aliases, metrics), GET .../versions/{v} (manifest: dataset,
 * hyper-parameters, curve, the test split's report), GET .../versions/{v}/evaluation (confusion matrix,
 * per-class metrics) for a version without a test split;
 * PUT .../aliases/{alias} with the Bearer key to promote or roll back. */
'use strict';

(() => {
  const {api, showError, el, fmt, when, modelPath, modelMissing} = Console;
  const $ = id => document.getElementById(id);
  const manifests = new Map();
  let info = null;

  async function manifest(version) {
    if (!manifests.has(version)) manifests.set(version, api(`${modelPath}/versions/${version}`));
    return manifests.get(version);
  }

  function pct(x) { return x === null || x === undefined ? '–' : (x * 100).toFixed(2) + '%'; }

  /* A manifest records every field of TrainConfig (core/training_config.py), also those the run never
   * read: these apply only to some architectures, optimizers or schedules, and are shown only there. */
  const APPLIES = {
    channels: (hp, m) => architecture(hp, m) === 'cnn',
    momentum: hp => hp.optimizer === 'momentum',  // Adam keeps its own moments; gd and sgd have none
    lr_decay: hp => hp.lr_schedule === 'inverse',
  };

  /* 'cnn' or 'mlp': the recorded arch, else (manifests from before the CNN) what the layers say. */
  function architecture(hp, m) {
    return hp.arch || ((m.architecture || []).some(layer => layer.type === 'conv2d') ? 'cnn' : 'mlp');
  }

  function hyperparameters(m) {
    const hp = m.hyperparameters || {};
    return Object.entries(hp).filter(([name]) => !APPLIES[name] || APPLIES[name](hp, m))
      .map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : value]);
  }

  /* The file's own name: the manifest keeps the path the trainer read, which on a server is an
   * absolute path that says nothing to a reader of this page ("(last 2000)" suffixes survive). */
  function fileName(source) {
    return source === null || source === undefined ? '–' : String(source).replace(/[\\/]+$/, '').replace(/^.*[\\/]/, '');
  }

  async function load() {
    showError('models-error', null);
    try {
      info = await api(modelPath);
    } catch (error) {
      $('aliases').textContent = '';  // no longer loading
      if (!modelMissing(error)) showError('models-error', error);
      return;
    }
    const aliases = Object.entries(info.aliases);
    $('aliases').textContent = (aliases.length ? aliases.map(([a, v]) => `${a} → v${v}`).join(', ') : 'no aliases') +
      (info.serving_version ? ` · this worker serves v${info.serving_version}` : '');
    $('versions').tBodies[0].replaceChildren(...info.versions.slice().reverse().map(v => el('tr', {'data-version': v.version},
      el('td', {text: 'v' + v.version}), el('td', {class: 'wide-only', text: when(v.created_at)}),
      el('td', {}, ...v.aliases.map(a => el('span', {class: 'badge', text: a}))),
      el('td', {text: pct(v.metrics.dev_accuracy)}), el('td', {text: pct(v.metrics.test_accuracy)}),
      el('td', {class: 'wide-only', text: pct(v.metrics.train_accuracy)}))));
    const versions = info.versions.map(v => v.version);
    for (const id of ['promote-version', 'pick-a', 'pick-b']) {
      const select = $(id), keep = select.value;
      select.replaceChildren(...versions.slice().reverse().map(v => el('option', {value: v, text: 'version ' + v})));
      if (keep && versions.includes(+keep)) select.value = keep;
    }
    const production = info.production_version, older = versions.filter(v => v < production);
    $('rollback').textContent = older.length ? `Roll back production to v${older[older.length - 1]}` : 'Roll back production';
    $('rollback').disabled = !older.length;
    // One version has nothing to compare with: show it alone rather than beside itself.
    const single = versions.length < 2;
    $('compare-h').textContent = single ? 'Version details' : 'Compare two versions';
    $('compare-note').textContent = single ? `v${versions[0]} is the only version of ${Console.model}: ` +
      'nothing to compare it with yet (retrain it on the Jobs page to get another).' : '';
    $('compare-pick').hidden = $('panel-b').hidden = single;
    $('compare-note').hidden = !single;
    if (!$('pick-a').dataset.chosen) {
      $('pick-a').value = production ?? versions[versions.length - 1];
      $('pick-b').value = versions.filter(v => v !== +$('pick-a').value).pop() ?? $('pick-a').value;
    }
    showPanel('a');
    if (!single) showPanel('b');
  }

  function kv(pairs) {
    return el('dl', {class: 'kv'}, ...pairs.flatMap(([k, v]) => [el('dt', {text: k}), el('dd', {text: fmt(v)})]));
  }

  async function showPanel(side) {
    const version = +$('pick-' + side).value, panel = $('panel-' + side);
    if (!version) return;
    panel.replaceChildren(el('h3', {text: `Version ${version}`}), el('p', {class: 'muted', text: 'Loading…'}));
    let m;
    try {
      m = await manifest(version);
    } catch (error) {
      panel.replaceChildren(el('h3', {text: `Version ${version}`}), el('p', {class: 'error', text: error.message}));
      return;
    }
    const metrics = m.metrics || {}, data = m.dataset || {}, curve = m.curve || [];
    const loss = el('div'), acc = el('div'), confusion = el('div', {class: 'confusion-box'}), perClass = el('div');
    const evalNote = el('p', {class: 'muted', text: 'Evaluating…'}), evalError = el('p', {class: 'error'});
    panel.replaceChildren(
      el('h3', {text: `Version ${version}`}),
      el('p', {class: 'muted', text: `created ${when(m.created_at)} · ${(m.architecture || []).length} layers · ` +
                                     `best epoch ${m.best_epoch ?? '–'} · trained in ${fmt(m.training_seconds, 1)} s`}),
      kv([['test accuracy', pct(metrics.test_accuracy)], ['dev accuracy', pct(metrics.dev_accuracy)],
          ['dev loss', metrics.dev_loss], ['train accuracy', pct(metrics.train_accuracy)],
          ['train loss', metrics.train_loss]]),
      el('h3', {text: 'Dataset'}),
      kv([['train', `${fileName((data.train || {}).source)} (${(data.train || {}).rows ?? '?'} rows)`],
          ['dev', `${(data.dev || {}).split ?? '–'} (${(data.dev || {}).rows ?? '?'} rows)`],
          ...(data.test ? [['test', `${data.test.split} (${data.test.rows} rows)`]] : []),
          ['sha256', ((data.train || {}).sha256 || '').slice(0, 16) + '…']]),
      el('h3', {text: 'Hyper-parameters'}),
      kv(hyperparameters(m)),
      el('h3', {text: 'Loss per epoch'}), loss,
      el('h3', {text: 'Accuracy per epoch'}), acc,
      el('h3', {text: 'Confusion matrix'}), evalNote, evalError, confusion,
      el('h3', {text: 'Per-class precision and recall'}), perClass);
    const series = (key, name, dashed) => ({name, dashed, points: curve.map(c => [c.epoch, c[key]])});
    Charts.lineChart(loss, [series('train_loss', 'train'), series('dev_loss', 'dev', true)], {yLabel: 'loss'});
    Charts.lineChart(acc, [series('train_accuracy', 'train'), series('dev_accuracy', 'dev', true)], {yLabel: 'accuracy'});
    try {
      // The test split's report, made when the version was trained (rows no training step looked at);
      // versions without one are scored now on the rows held out from their training.
      const ev = m.test ? {...m.test, rows: data.test.rows} : await api(`${modelPath}/versions/${version}/evaluation`);
      evalNote.textContent = m.test
        ? `${ev.rows} rows of the test split, never used in training: accuracy ${pct(ev.accuracy)}`
        : `${ev.rows} rows of ${ev.dataset} (${ev.split}): accuracy ${pct(ev.accuracy)}`;
      Charts.matrixChart(confusion, ev.confusion_matrix, {title: `confusion matrix of version ${version}`});
      perClass.replaceChildren(el('div', {class: 'scroll'}, el('table', {},
        el('thead', {}, el('tr', {}, ...['class', 'precision', 'recall', 'support'].map(h => el('th', {text: h})))),
        el('tbody', {}, ...ev.per_class.map(c => el('tr', {}, el('td', {text: c.class}),
          el('td', {text: pct(c.precision)}), el('td', {text: pct(c.recall)}), el('td', {text: c.support})))))));
    } catch (error) {
      evalNote.textContent = '';
      showError(evalError, error);
    }
  }

  async function pointAlias(alias, version, button) {
    showError('promote-error', null);
    $('promote-ok').textContent = '';
    button.disabled = true;
    try {
      const answer = await api(`${modelPath}/aliases/${encodeURIComponent(alias)}`,
                               {method: 'PUT', json: {version}, auth: true});
      $('promote-ok').textContent = `${answer.alias} now points at v${answer.version}` +
        (answer.previous_version ? ` (was v${answer.previous_version})` : '');
      await load();
    } catch (error) {
      showError('promote-error', error);
    } finally {
      button.disabled = false;
    }
  }

  $('promote').addEventListener('click', event =>
    pointAlias($('promote-alias').value.trim(), +$('promote-version').value, event.currentTarget));
  $('rollback').addEventListener('click', event => {
    const older = info.versions.map(v => v.version).filter(v => v < info.production_version);
    if (older.length) pointAlias('production', older[older.length - 1], event.currentTarget);
  });
  for (const side of ['a', 'b']) {
    $('pick-' + side).addEventListener('change', () => { $('pick-a').dataset.chosen = '1'; showPanel(side); });
  }
  load();
})();
