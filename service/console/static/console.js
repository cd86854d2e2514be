/* mnist-serve console: the shared client of the public HTTP API.
 * api() calls an endpoint and throws the API's own {"error"} text; showError() puts it next to
 * the control that caused it. The API key lives in sessionStorage only (never a URL or cookie).
 * The model picker in the header is filled from GET /v1/models; the choice lives in the page URL
 * (?model=NAME), which the server renders into data-model and every nav link. */
'use strict';

const Console = (() => {
  const KEY = 'mnist-serve.api-key';
  const model = document.body.dataset.model;

  class ApiError extends Error {
    constructor(message, status, path) { super(message); this.status = status; this.path = path; }
  }

  const modelPath = '/v1/models/' + encodeURIComponent(model);

  /* A 404 from GET /v1/models/{name} itself means the picked model is unknown. bindPicker shows that
   * once, in the page-wide alert under the header; a page's own box would only repeat it. */
  function modelMissing(error) {
    return error instanceof ApiError && error.status === 404 && error.path === modelPath;
  }

  function key() { return sessionStorage.getItem(KEY) || ''; }

  function bindKeyInput() {
    const input = document.getElementById('api-key');
    if (!input) return;
    input.value = key();
    input.addEventListener('input', () => {
      if (input.value) sessionStorage.setItem(KEY, input.value); else sessionStorage.removeItem(KEY);
    });
  }

  /* fetch + JSON; a non-2xx answer throws ApiError with the API's {"error"} message. */
  async function api(path, {method = 'GET', json, body, headers = {}, auth = false} = {}) {
    const options = {method, headers: {...headers}};
    if (json !== undefined) {
      options.body = JSON.stringify(json);
      options.headers['Content-Type'] = 'application/json';
    } else if (body !== undefined) {
      options.body = body;
    }
    if (auth && key()) options.headers.Authorization = 'Bearer ' + key();
    let response;
    try {
      response = await fetch(path, options);
    } catch (exc) {
      throw new ApiError('the server did not answer (' + exc.message + ')', 0, path);
    }
    const type = response.headers.get('Content-Type') || '';
    const payload = type.includes('json') ? await response.json() : await response.text();
    if (!response.ok) {
      const message = payload && payload.error ? payload.error : 'HTTP ' + response.status;
      throw new ApiError(message, response.status, path);
    }
    return payload;
  }

  function showError(target, error) {
    const el = typeof target === 'string' ? document.getElementById(target) : target;
    if (!el) return;
    el.textContent = error ? (error.message || String(error)) : '';
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === 'text') node.textContent = value;
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function fmt(value, digits = 4) {
    if (value === null || value === undefined) return '–';
    return typeof value === 'number' ? (Number.isInteger(value) ? String(value) : value.toFixed(digits)) : String(value);
  }

  function when(iso) {
    if (!iso) return '–';
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  /* Fill the header's picker from GET /v1/models. An unknown ?model= keeps its own option and shows the
   * API's 404 text (GET /v1/models/{name} names the served models) in the page-wide alert. */
  async function bindPicker() {
    const form = document.querySelector('form.model-pick'), select = document.getElementById('model-pick');
    if (!select) return;
    let keyed = false;
    // Chromium fires change on every arrow key of a closed <select>: a keyboard user moves with the
    // arrows and switches with Enter (or the Use button); a pointer choice switches at once.
    select.addEventListener('keydown', event => {
      keyed = event.key !== 'Enter';
      if (event.key === 'Enter') { event.preventDefault(); form.requestSubmit(); }
    });
    select.addEventListener('pointerdown', () => { keyed = false; });
    select.addEventListener('change', () => { if (!keyed) form.requestSubmit(); });
    let listing;
    try {
      listing = await api('/v1/models');
    } catch (error) {
      showError('model-error', error);
      return;
    }
    const names = listing.models.map(m => m.name);
    select.replaceChildren(...listing.models.map(m => el('option', {value: m.name,
      text: m.name + (m.name === listing.default ? ' (default)' : '') +
            (m.production_version ? ` · v${m.production_version}` : '')})));
    if (!names.includes(model)) {
      select.prepend(el('option', {value: model, text: model + ' (unknown)'}));
      try {
        await api(modelPath);
      } catch (error) {
        showError('model-error', error);
      }
    }
    select.value = model;
    select.dataset.loaded = names.length;
  }

  document.addEventListener('DOMContentLoaded', () => { bindKeyInput(); bindPicker(); });
  return {api, key, showError, el, fmt, when, model, defaultModel: document.body.dataset.defaultModel, ApiError, modelPath,
          modelMissing};
})();
