/* Small inline-SVG charts and colour scales for the console, no library.
 * Colour scales are colour-blind safe: viridis (sequential) and blue-white-orange (diverging). */
'use strict';

const Charts = (() => {
  const SVG = 'http://www.w3.org/2000/svg';
  // Okabe-Ito colours, distinguishable under the common colour-vision deficiencies.
  const SERIES = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00'];
  const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                   [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  const BLUE = [33, 102, 172], WHITE = [247, 247, 247], ORANGE = [230, 97, 1];

  function mix(a, b, t) { return a.map((v, i) => Math.round(v + (b[i] - v) * t)); }

  function viridis(t) {
    t = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(t), VIRIDIS.length - 2);
    return mix(VIRIDIS[i], VIRIDIS[i + 1], t - i);
  }

  /* -1..1: blue (against the class) through white (no effect) to orange (for the class). */
  function diverging(t) {
    t = Math.min(Math.max(t, -1), 1);
    return t < 0 ? mix(WHITE, BLUE, -t) : mix(WHITE, ORANGE, t);
  }

  function rgb(c) { return `rgb(${c[0]},${c[1]},${c[2]})`; }

  function node(tag, attrs = {}, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function niceTicks(lo, hi, count = 4) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / count, mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toFixed(10));
    return ticks;
  }

  /* series: [{name, points: [[x, y], ...], dashed}]; draws axes, ticks, lines and point markers. */
  function lineChart(container, series, {xLabel = 'epoch', yLabel = '', yMin, yMax, title = ''} = {}) {
    const W = 420, H = 220, L = 46, R = 10, T = 10, B = 34;
    const all = series.flatMap(s => s.points);
    const svg = node('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
                              'aria-label': title || yLabel});
    const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
    const x0 = Math.min(1, ...xs), x1 = Math.max(x0 + 1, ...xs);
    let y0 = yMin ?? Math.min(...ys), y1 = yMax ?? Math.max(...ys);
    if (!all.length) { y0 = yMin ?? 0; y1 = yMax ?? 1; }
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    for (const t of niceTicks(y0, y1)) {
      svg.append(node('line', {x1: L, x2: W - R, y1: sy(t), y2: sy(t), stroke: '#e3e6ea'}));
      svg.append(node('text', {x: L - 4, y: sy(t) + 4, 'text-anchor': 'end'}, String(+t.toFixed(3))));
    }
    const xt = niceTicks(x0, x1, Math.min(6, Math.max(1, Math.round(x1 - x0)))).filter(Number.isInteger);
    for (const t of xt) svg.append(node('text', {x: sx(t), y: H - B + 14, 'text-anchor': 'middle'}, String(t)));
    svg.append(node('line', {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: '#8a939d'}));
    svg.append(node('line', {x1: L, x2: L, y1: T, y2: H - B, stroke: '#8a939d'}));
    svg.append(node('text', {x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle'}, xLabel));
    svg.append(node('text', {x: 12, y: (T + H - B) / 2, 'text-anchor': 'middle',
                             transform: `rotate(-90 12 ${(T + H - B) / 2})`}, yLabel));
    series.forEach((s, i) => {
      const colour = s.colour || SERIES[i % SERIES.length];
      const pts = s.points.filter(p => p[1] !== null && p[1] !== undefined);
      if (pts.length > 1) {
        svg.append(node('polyline', {points: pts.map(p => `${sx(p[0])},${sy(p[1])}`).join(' '), fill: 'none',
                                     stroke: colour, 'stroke-width': 2, 'stroke-dasharray': s.dashed ? '5 3' : 'none'}));
      }
      for (const p of pts) {
        svg.append(node('circle', {cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: colour, class: 'point',
                                   'data-series': s.name}));
      }
    });
    const legend = document.createElement('div');
    legend.className = 'legend';
    series.forEach((s, i) => {
      const item = document.createElement('span');
      const sw = document.createElement('span');
      sw.className = 'swatch' + (s.dashed ? ' dashed' : '');
      sw.style.background = s.colour || SERIES[i % SERIES.length];
      sw.style.color = s.colour || SERIES[i % SERIES.length];
      item.append(sw, s.name);
      legend.append(item);
    });
    container.replaceChildren(svg, legend);
    return svg;
  }

  /* A 10x10 confusion matrix as an SVG heatmap (viridis on the row share, so every class reads alike). */
  function matrixChart(container, matrix, {title = 'confusion matrix'} = {}) {
    const n = matrix.length, cell = 30, L = 34, T = 30, W = L + n * cell + 4, H = T + n * cell + 4;
    const svg = node('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart confusion', role: 'img', 'aria-label': title});
    svg.append(node('text', {x: L + n * cell / 2, y: 10, 'text-anchor': 'middle'}, 'predicted'));
    svg.append(node('text', {x: 8, y: T + n * cell / 2, 'text-anchor': 'middle',
                             transform: `rotate(-90 8 ${T + n * cell / 2})`}, 'true'));
    matrix.forEach((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      svg.append(node('text', {x: L - 6, y: T + i * cell + cell / 2 + 4, 'text-anchor': 'end'}, String(i)));
      svg.append(node('text', {x: L + i * cell + cell / 2, y: T - 6, 'text-anchor': 'middle'}, String(i)));
      row.forEach((count, j) => {
        const share = count / total, colour = viridis(Math.sqrt(share));
        const g = node('g');
        g.append(node('rect', {x: L + j * cell, y: T + i * cell, width: cell - 1, height: cell - 1, fill: rgb(colour)}));
        g.append(node('title', {}, `true ${i}, predicted ${j}: ${count} (${(share * 100).toFixed(1)}% of ${i}s)`));
        if (count) {
          const light = colour[0] * 0.299 + colour[1] * 0.587 + colour[2] * 0.114 > 140;
          g.append(node('text', {x: L + j * cell + cell / 2, y: T + i * cell + cell / 2 + 4, 'text-anchor': 'middle',
                                 style: `fill:${light ? '#111' : '#fff'};font-size:${count > 999 ? 8 : 10}px`},
                        String(count)));
        }
        svg.append(g);
      });
    });
    container.replaceChildren(svg);
    return svg;
  }

  /* A 28x28 grid drawn into a PNG data URL (shown pixelated by CSS). */
  function gridImage(grid, colourOf) {
    const size = grid.length, canvas = document.createElement('canvas');
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext('2d'), image = ctx.createImageData(size, size);
    grid.forEach((row, y) => row.forEach((value, x) => {
      const c = colourOf(value), k = (y * size + x) * 4;
      image.data[k] = c[0]; image.data[k + 1] = c[1]; image.data[k + 2] = c[2]; image.data[k + 3] = 255;
    }));
    ctx.putImageData(image, 0, 0);
    return canvas.toDataURL('image/png');
  }

  return {lineChart, matrixChart, gridImage, viridis, diverging, rgb, SERIES};
})();
