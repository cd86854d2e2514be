/* Try it: draw (pointer events: mouse, pen, touch) or upload a photo, then
 * POST /v1/models/{name}[/versions/{v}|/labels/{a}]:explain with {"instances": [{"b64": ...}]}
 * and show the probabilities, the 28x28 input the model saw and the attribution heatmap. The model
 * is the header picker's (Console.modelPath). */
'use strict';

(() => {
  const {api, showError, el, modelPath, modelMissing} = Console;
  const pad = document.getElementById('pad'), ctx = pad.getContext('2d');
  const target = document.getElementById('target'), errorBox = document.getElementById('try-error');
  let drawing = false, inked = false, timer = null;

  function clearPad() {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, pad.width, pad.height);
    inked = false;
  }

  function point(event) {
    const box = pad.getBoundingClientRect();  // CSS size may differ from the 280x280 bitmap
    return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
  }

  pad.addEventListener('pointerdown', event => {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    drawing = true;
    clearTimeout(timer);
    const [x, y] = point(event);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 0.01, y);
    ctx.stroke();
  });
  pad.addEventListener('pointermove', event => {
    if (!drawing) return;
    const [x, y] = point(event);
    ctx.lineTo(x, y);
    ctx.stroke();
    inked = true;
  });
  const stop = () => {
    if (!drawing) return;
    drawing = false;
    clearTimeout(timer);
    timer = setTimeout(explainDrawing, 350);  // a pause after the pen lifts: a 7 is two strokes
  };
  pad.addEventListener('pointerup', stop);
  pad.addEventListener('pointercancel', stop);

  function explainPath() {
    const [kind, value] = target.value.split(':');
    const suffix = kind === 'v' ? '/versions/' + value : kind === 'a' ? '/labels/' + encodeURIComponent(value) : '';
    return modelPath + suffix + ':explain';
  }

  async function explain(b64) {
    showError(errorBox, null);
    try {
      const answer = await api(explainPath(), {method: 'POST', json: {instances: [{b64}]}});
      render(answer);
    } catch (error) {
      showError(errorBox, error);
    }
  }

  function explainDrawing() {
    if (!inked) { showError(errorBox, 'draw a digit first'); return; }
    explain(pad.toDataURL('image/png').split(',')[1]);
  }

  function render(answer) {
    const item = answer.explanations[0], probs = item.probabilities;
    const order = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
    document.getElementById('hint').hidden = true;
    document.getElementById('result').hidden = false;
    // A model whose manifest names its classes (e.g. Fashion-MNIST) answers "class" beside "label".
    document.getElementById('answer').textContent = 'It is a ' + item.label + (item.class ? ' — ' + item.class : '');
    document.getElementById('answered-by').textContent = `answered by ${answer.model_name} version ${answer.model_version}`;
    document.getElementById('top3').textContent = 'Top 3: ' +
      order.slice(0, 3).map(([p, i]) => `${i} (${(p * 100).toFixed(1)}%)`).join(', ');
    const bars = document.getElementById('bars');
    bars.replaceChildren(...probs.map((p, i) => el('li', {class: i === item.label ? 'top' : null, 'data-digit': i},
      el('span', {text: String(i)}),
      el('span', {class: 'track', role: 'img', 'aria-label': `${i}: ${(p * 100).toFixed(1)} percent`},
         Object.assign(el('span', {class: 'fill'}), {style: `width:${(p * 100).toFixed(2)}%`})),
      el('span', {class: 'p', text: (p * 100).toFixed(1) + '%'}))));
    bars.querySelectorAll('.fill').forEach((fill, i) => { fill.style.width = (probs[i] * 100).toFixed(2) + '%'; });
    document.getElementById('seen').src = Charts.gridImage(item.pixels, v => [v, v, v]);
    // Scaled by the 98th percentile of the non-zero magnitudes with a gamma of 0.6: a few extreme
    // pixels would otherwise wash every other one out to white.
    const sizes = item.attributions.flat().map(Math.abs).filter(a => a > 0).sort((a, b) => a - b);
    const scale = sizes.length ? sizes[Math.floor(0.98 * (sizes.length - 1))] : 1;
    const shade = a => Math.sign(a) * Math.min(1, Math.abs(a) / scale) ** 0.6;
    // The digit shows faintly under the colours, so the attribution reads against its strokes.
    document.getElementById('heatmap').src = Charts.gridImage(item.attributions.map((row, y) => row.map((a, x) =>
      [shade(a), item.pixels[y][x] / 255])), ([t, ink]) => Charts.diverging(t).map(c => Math.round(c * (1 - 0.3 * ink))));
    document.getElementById('method').textContent = (answer.method || 'attribution').replaceAll('_', ' ');
    bringIntoView(document.getElementById('answer-line'));
  }

  /* On a phone the result card sits below the pad, under the fold: move to the answer, smoothly
   * (unless the reader asked for less motion), and only when it is not already in full view, so a
   * desktop page or a reader who scrolled there keeps still. */
  function bringIntoView(node) {
    const box = node.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    const calm = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    node.scrollIntoView({behavior: calm ? 'auto' : 'smooth', block: 'start'});
  }

  document.getElementById('predict').addEventListener('click', explainDrawing);
  document.getElementById('clear').addEventListener('click', () => { clearPad(); showError(errorBox, null); });
  document.getElementById('photo').addEventListener('change', event => {
    const file = event.target.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => explain(String(reader.result).split(',')[1]);
    reader.onerror = () => showError(errorBox, 'could not read ' + file.name);
    reader.readAsDataURL(file);
  });

  async function loadTargets() {
    try {
      const info = await api(modelPath);
      for (const [alias, version] of Object.entries(info.aliases)) {
        target.append(el('option', {value: 'a:' + alias, text: `alias ${alias} (v${version})`}));
      }
      for (const v of info.versions) target.append(el('option', {value: 'v:' + v.version, text: 'version ' + v.version}));
    } catch (error) {
      if (!modelMissing(error)) showError(errorBox, error);
    }
  }

  clearPad();
  ctx.lineWidth = 22;
  ctx.lineCap = ctx.lineJoin = 'round';
  ctx.strokeStyle = '#000';
  loadTargets();
})();
