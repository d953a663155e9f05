'use strict';
// The review page: rows come from api/state, decisions go to api/decision. Only one page of rows is in the DOM at a time;
// a row's element is built once and reused, so its audio and image stay loaded when the page is shown again.
const state = {
  rows: [], byClip: new Map(), classes: [], saved: {}, pending: [], view: [], page: 0, pageSize: 100, selected: null,
  elements: new Map(), banners: new Map(), audit: null, confident: 0.5, pxPerSecond: 24, ticks: {}, flushing: false,
  retryTimer: null, chooserClip: null, storageKey: 'review-pending', lastContact: null,
};
const $ = (selector, root = document) => root.querySelector(selector);
const RETRY_MS = 2500, PING_MS = 5000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value; else if (key === 'text') node.textContent = value;
    else if (key === 'style') node.style.cssText = value;        // CSSOM, which the page's Content-Security-Policy allows
    else if (key.startsWith('data-') || key === 'title') node.setAttribute(key, value); else node[key] = value;
  }
  node.append(...children.filter(child => child !== null && child !== undefined && child !== ''));
  return node;
}
const pct = p => (p === null || p === undefined || Number.isNaN(p)) ? '-' : (p > 0 && p < 0.005 ? '<1%' : `${Math.round(p * 100)}%`);
const seconds = s => (s === null || s === undefined) ? '' : `${Number(s).toFixed(1)} s`;
function describe(d) { return !d || !d.decision ? '' : d.decision === 'relabel' ? `relabel \u2192 ${d.new_label}` : d.decision; }

// ---- banners: failures the curator must see; each stays until its cause is gone (or, for refusals, until dismissed)
function setBanner(key, message, level = 'error', dismissable = false) {
  state.banners.set(key, {message, level, dismissable});
  renderBanners();
}
function clearBanner(key) { if (state.banners.delete(key)) renderBanners(); }
function renderBanners() {
  $('#banner').replaceChildren(...[...state.banners].map(([key, b]) => {
    const div = el('div', {class: b.level, 'data-key': key, text: b.message});
    if (b.dismissable) div.append(el('button', {type: 'button', text: 'dismiss', onclick: () => clearBanner(key)}));
    return div;
  }));
  measureBar();
}
function measureBar() { document.documentElement.style.setProperty('--bar-height', `${$('#bar').offsetHeight + 4}px`); }

// ---- decisions: saved ones (from the server) and pending ones (made here, not confirmed yet)
function current(clip) {
  for (let i = state.pending.length - 1; i >= 0; i--) if (state.pending[i].clip === clip) return state.pending[i];
  return state.saved[clip] || null;
}
const isPending = clip => state.pending.some(entry => entry.clip === clip);
function storePending() {
  try { localStorage.setItem(state.storageKey, JSON.stringify(state.pending)); } catch (error) { /* storage may be off: the page still holds them */ }
}
function restorePending() {
  try { return JSON.parse(localStorage.getItem(state.storageKey) || '[]').filter(e => state.byClip.has(e.clip)); } catch (error) { return []; }
}
function updateUnsaved() {
  const n = state.pending.length;
  if (n) setBanner('unsaved', `${n} decision${n > 1 ? 's' : ''} not saved yet: kept in this page and sent again every ${RETRY_MS / 1000} s. Keep this tab open.`, 'warning');
  else clearBanner('unsaved');
}
async function post(entry) {
  const controller = new AbortController(), timer = setTimeout(() => controller.abort(), 10000);
  try {
    const response = await fetch('api/decision', {method: 'POST', headers: {'Content-Type': 'application/json', ...tokenHeader()},
                                                  body: JSON.stringify({clip: entry.clip, decision: entry.decision, new_label: entry.new_label || ''}),
                                                  signal: controller.signal, cache: 'no-store'});
    let body = {};
    try { body = await response.json(); } catch (error) { body = {error: `HTTP ${response.status}`}; }
    return {ok: response.ok, status: response.status, body};
  } catch (error) { return {network: true, error: String(error)}; }
  finally { clearTimeout(timer); }
}
function lostServer(detail) {
  setBanner('server', `The review server does not answer (${detail}). Decisions are kept in this page and sent when it is back; ` +
                      `restart it with the same command if it stopped.`, 'error');
}
function schedule() { clearTimeout(state.retryTimer); state.retryTimer = setTimeout(flush, RETRY_MS); }
async function flush() {
  if (state.flushing || !state.pending.length) return;
  state.flushing = true; clearTimeout(state.retryTimer);
  try {
    while (state.pending.length) {
      const entry = state.pending[0], result = await post(entry);
      if (result.network || result.status >= 500) { lostServer(result.network ? 'no connection' : `error ${result.status}`); schedule(); break; }
      clearBanner('server');
      if (result.ok) {
        state.pending.shift();
        state.saved[entry.clip] = result.body.decision;
        if ('audit' in result.body) state.audit = result.body.audit;
        clearBanner('file');
      } else if (result.body.kind === 'decisions-file') {
        setBanner('file', `Decisions cannot be saved: ${result.body.error}. Fix or move that file; the page retries.`, 'error');
        schedule(); break;
      } else {
        state.pending.shift();
        setBanner(`refused-${entry.clip}`, `Refused by the server, not saved: ${entry.clip} ${describe(entry)} (${result.body.error || result.status})`, 'error', true);
      }
      storePending(); updateRow(entry.clip);
    }
  } finally {
    state.flushing = false; storePending(); updateUnsaved(); renderAudit(); renderCounts();
    if (state.pending.length && !state.retryTimer) schedule();
  }
}
async function ping() {
  try {
    const response = await fetch('api/ping', {cache: 'no-store', headers: tokenHeader()});
    if (response.status >= 500) throw new Error(`error ${response.status}`);
    clearBanner('server'); flush();
  } catch (error) { lostServer('no connection'); }
}
function tokenHeader() { return state.token ? {'X-Review-Token': state.token} : {}; }

// ---- the view: filters, sort, pages, selection
function matches(row) {
  const cls = $('#filter-class').value, decision = $('#filter-decision').value, kind = $('#filter-kind').value;
  if (cls && row.given_label !== cls) return false;
  if (kind === 'audit' ? !row.audit : (kind && row.kind !== kind)) return false;
  const d = (current(row.clip) || {}).decision;
  if (decision === 'undecided') return !d || d === 'skip';
  if (decision === 'unsaved') return isPending(row.clip);
  return !decision || d === decision;
}
function computeView() {
  const sort = $('#sort').value, c = row => row.confidence ?? -1;
  const compare = {
    'confidence-desc': (a, b) => c(b) - c(a), 'confidence-asc': (a, b) => c(a) - c(b),
    'clip': (a, b) => a.clip.localeCompare(b.clip), 'duration': (a, b) => (b.seconds ?? 0) - (a.seconds ?? 0),
    'given': (a, b) => a.given_label.localeCompare(b.given_label) || c(b) - c(a)}[sort];
  state.view = state.rows.filter(matches).sort(compare).map(row => row.clip);
  state.index = new Map(state.view.map((clip, i) => [clip, i]));
}
const pages = () => Math.max(1, Math.ceil(state.view.length / state.pageSize));
function applyView(preferred = undefined) {
  computeView();
  let clip = preferred !== undefined ? preferred : state.selected;
  if (clip === null || !state.index.has(clip)) clip = state.view.length ? state.view[Math.min(state.page * state.pageSize, state.view.length - 1)] : null;
  if (clip !== null) state.page = Math.floor(state.index.get(clip) / state.pageSize);
  state.page = Math.min(state.page, pages() - 1);
  renderPage();
  select(clip);
  renderCounts();
}
function renderPage() {
  const start = state.page * state.pageSize, clips = state.view.slice(start, start + state.pageSize);
  $('#rows tbody').replaceChildren(...clips.map(rowElement));
  $('#empty').hidden = state.view.length > 0;
  $('#page').textContent = `page ${state.page + 1} of ${pages()}`;
  $('#prev-page').disabled = state.page === 0; $('#next-page').disabled = state.page >= pages() - 1;
  prefetch(state.view.slice(start + state.pageSize, start + 2 * state.pageSize));
}
function prefetch(clips) {   // the next page's images, so paging on shows no blank spectrogram
  for (const clip of clips) if (state.byClip.get(clip).has_spectrogram && !state.elements.has(clip)) new Image().src = specUrl(clip);
}
function select(clip) {
  for (const tr of document.querySelectorAll('#rows tbody tr.selected')) tr.classList.remove('selected');
  state.selected = clip;
  if (clip === null) return;
  const tr = state.elements.get(clip);
  if (tr && tr.isConnected) { tr.classList.add('selected'); tr.scrollIntoView({block: 'nearest'}); }
}
function move(step) {
  if (!state.view.length) return;
  const at = state.selected === null ? -1 : state.index.get(state.selected);
  const next = state.view[Math.max(0, Math.min(state.view.length - 1, at < 0 ? 0 : at + step))];
  const page = Math.floor(state.index.get(next) / state.pageSize);
  if (page !== state.page) { state.page = page; renderPage(); }
  select(next);
}
function turnPage(step) {
  const page = Math.max(0, Math.min(pages() - 1, state.page + step));
  if (page === state.page) return;
  state.page = page; renderPage(); select(state.view[page * state.pageSize] ?? null);
}

// ---- one row
const specUrl = clip => `spectrogram/${encodeURIComponent(clip)}.png`;
function spectrogram(row) {
  const width = Math.max(1, Math.round((row.seconds || 0) * state.pxPerSecond));
  const axis = el('div', {class: 'faxis', title: 'frequency (Hz)'}, ...(state.ticks[row.version] || []).map(([y, label]) => el('span', {style: `top:${y}px`, text: label})));
  const playhead = el('div', {class: 'playhead'});
  const plot = el('div', {class: 'plot', style: `width:${width}px`},
                  el('img', {src: specUrl(row.clip), width, height: 64, alt: `spectrogram of ${row.clip}`, decoding: 'async'}), playhead);
  const step = row.seconds > 8 ? 5 : 1, ruler = el('div', {class: 'taxis', style: `width:${width}px;--px-per-s:${state.pxPerSecond}px`});
  for (let s = step; s < row.seconds; s += step) ruler.append(el('span', {style: `left:${s * state.pxPerSecond}px`, text: `${s}s`}));
  return {node: el('div', {}, el('div', {class: 'spec'}, axis, el('div', {}, plot, ruler))), playhead};
}
function rowElement(clip) {
  if (state.elements.has(clip)) return state.elements.get(clip);
  const row = state.byClip.get(clip);
  const tr = el('tr', {'data-clip': row.clip, 'data-kind': row.kind, 'data-given': row.given_label, 'data-decision': '', 'data-pending': 'false'});
  const media = el('td', {class: 'media'});
  let playhead = null;
  if (row.has_spectrogram) { const s = spectrogram(row); media.append(s.node); playhead = s.playhead; }
  else media.append(el('div', {class: 'muted', text: 'no spectrogram (no features for this clip)'}));
  if (row.has_audio) {
    const audio = el('audio', {controls: true, preload: 'metadata', src: `audio/${encodeURIComponent(row.clip)}`});
    if (playhead) followAudio(audio, playhead);
    media.append(audio);
  } else media.append(el('div', {class: 'muted', text: 'no audio (data set not found)'}));
  const confident = row.suggested_label && row.confidence >= state.confident;
  const button = (action, text, title) => el('button', {type: 'button', 'data-action': action, text, title});
  const suggest = button('relabel-suggested', row.suggested_label ? `relabel \u2192 ${row.suggested_label}` : 'relabel', 'relabel to the suggestion (r)');
  suggest.disabled = !confident;
  if (!confident) suggest.title = `the models are not confident enough (under ${pct(state.confident)}): choose the class (c)`;
  tr.append(
    el('td', {class: 'clip'}, el('div', {text: row.clip}),
       el('span', {class: `badge ${row.audit ? 'audit' : row.kind}`, text: row.audit ? 'audit sample' : row.kind,
                   title: row.audit ? 'drawn at random from the accepted clips: is its label right?' : ''}),
       el('div', {class: 'muted', text: `fold ${row.fold}${row.seconds ? ' \u00b7 ' + seconds(row.seconds) : ''}`})),
    media,
    el('td', {class: 'given'}, el('strong', {text: row.given_label}),
       el('div', {class: 'muted', text: `models: ${pct(row.p_given)}`, title: 'mean posterior the models give the label the clip has'})),
    el('td', {class: 'suggested'}, el('strong', {text: row.suggested_label || '-'}),
       el('div', {text: row.suggested_label ? `models: ${pct(row.confidence)}` : '', title: 'mean posterior of the class the models rate highest after the given one'}),
       row.suggested_label ? el('div', {class: confident ? 'confident' : 'unsure', text: confident ? 'confident (r)' : 'unsure: choose (c)'}) : null),
    el('td', {class: 'top3'}, el('ol', {}, ...row.top3.map(([label, p]) => el('li', {text: `${label} ${pct(p)}`}))),
       row.exact ? null : el('div', {class: 'muted', text: 'from the given and heard classes only (full posteriors not saved)'})),
    el('td', {class: 'judged'}, ...row.judgments.map(j => el('div', {text: `${j.preset}, round ${j.iteration}: heard ${j.heard} (${pct(j.p)})${j.accepted ? ', accepted' : ''}`}))),
    el('td', {class: 'actions'}, button('keep', 'keep', 'keep the given label (k)'), suggest, el('br'),
       button('choose', 'choose\u2026', 'choose the class (c)'), button('drop', 'drop', 'drop the clip (d)'), button('skip', 'skip', 'decide later (s)'),
       el('div', {class: 'decision'})));
  state.elements.set(clip, tr);
  updateRow(clip);
  return tr;
}
function followAudio(audio, playhead) {
  let frame = null;
  const draw = () => { playhead.style.left = `${audio.currentTime * state.pxPerSecond}px`; frame = audio.paused ? null : requestAnimationFrame(draw); };
  audio.addEventListener('play', () => {
    document.querySelectorAll('audio').forEach(other => { if (other !== audio) other.pause(); });
    playhead.style.display = 'block'; if (!frame) frame = requestAnimationFrame(draw);
  });
  audio.addEventListener('seeked', draw);
  audio.addEventListener('ended', () => { playhead.style.display = 'none'; });
}
function updateRow(clip) {
  const tr = state.elements.get(clip); if (!tr) return;
  const d = current(clip);
  tr.dataset.decision = d ? d.decision : '';
  tr.dataset.pending = String(isPending(clip));
  $('.decision', tr).textContent = describe(d);
}

// ---- deciding
function decide(clip, decision, newLabel = '') {
  const row = state.byClip.get(clip);
  if (!row || !state.index.has(clip)) return;            // never a row the curator cannot see
  const at = state.index.get(clip), next = state.view[at + 1] ?? null;
  state.pending.push({clip, decision, new_label: newLabel, made: new Date().toISOString()});
  storePending(); updateRow(clip);
  computeView();
  const target = next !== null && state.index.has(next) ? next : state.index.has(clip) ? clip : (state.view[Math.min(at, state.view.length - 1)] ?? null);
  applyView(target);
  flush();
}
function act(clip, action) {
  const row = state.byClip.get(clip); if (!row) return;
  if (action === 'keep' || action === 'drop' || action === 'skip') decide(clip, action);
  else if (action === 'choose') openChooser(clip);
  else if (action === 'relabel-suggested') {
    if (row.suggested_label && row.confidence >= state.confident) decide(clip, 'relabel', row.suggested_label);
    else setBanner('unsure', `The models are not confident about ${clip} (${pct(row.confidence)} < ${pct(state.confident)}): choose its class with c.`, 'warning', true);
  }
}

// ---- the one shared class list
function openChooser(clip) {
  state.chooserClip = clip;
  const given = state.byClip.get(clip).given_label;
  $('#chooser-clip').textContent = clip;
  $('#chooser-input').value = '';
  for (const li of $('#chooser-list').children) li.dataset.given = String(li.dataset.value === given);
  filterChooser();
  $('#chooser').hidden = false; $('#chooser-input').focus();
}
function closeChooser() { $('#chooser').hidden = true; state.chooserClip = null; $('#rows').focus(); }
function chooserItems() { return [...$('#chooser-list').children].filter(li => !li.hidden); }
function filterChooser() {
  const text = $('#chooser-input').value.trim().toLowerCase().replace(/[\s_]+/g, ' ');
  let first = null;
  for (const li of $('#chooser-list').children) {
    li.hidden = li.dataset.given === 'true' || !li.dataset.value.toLowerCase().replace(/_/g, ' ').includes(text);
    li.classList.remove('active'); if (!li.hidden && !first) first = li;
  }
  if (first) first.classList.add('active');
}
function chooserMove(step) {
  const items = chooserItems(); if (!items.length) return;
  const at = items.findIndex(li => li.classList.contains('active'));
  items.forEach(li => li.classList.remove('active'));
  const li = items[Math.max(0, Math.min(items.length - 1, at + step))]; li.classList.add('active'); li.scrollIntoView({block: 'nearest'});
}
function chooserPick(li) {
  const clip = state.chooserClip;
  if (!li || clip === null) return;
  closeChooser(); decide(clip, 'relabel', li.dataset.value);
}

// ---- overlays and keys
function toggleHelp(show = $('#help').hidden) { $('#help').hidden = !show; if (!show) $('#rows').focus(); }
function toggleFilter(id, value) { const s = $('#' + id); s.value = s.value === value ? '' : value; applyView(); }
function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (!$('#chooser').hidden) {
    if (event.key === 'Escape') closeChooser();
    else if (event.key === 'ArrowDown') chooserMove(1); else if (event.key === 'ArrowUp') chooserMove(-1);
    else if (event.key === 'Enter') chooserPick($('#chooser-list li.active'));
    else return;
    event.preventDefault(); return;
  }
  if (!$('#help').hidden) { if (event.key === 'Escape' || event.key === '?') { toggleHelp(false); event.preventDefault(); } return; }
  const tag = event.target.tagName;
  if (tag === 'SELECT' || tag === 'INPUT' || tag === 'TEXTAREA') { if (event.key === 'Escape') { event.target.blur(); $('#rows').focus(); } return; }
  const clip = state.selected, actions = {k: 'keep', r: 'relabel-suggested', d: 'drop', s: 'skip', c: 'choose'};
  if (event.key === 'ArrowDown' || event.key === 'n') move(1);
  else if (event.key === 'ArrowUp' || event.key === 'p') move(-1);
  else if (event.key === ']' || event.key === 'PageDown') turnPage(1);
  else if (event.key === '[' || event.key === 'PageUp') turnPage(-1);
  else if (event.key === ' ' && clip !== null) { const audio = $('audio', state.elements.get(clip)); if (audio) audio.paused ? audio.play() : audio.pause(); }
  else if (actions[event.key] && clip !== null) act(clip, actions[event.key]);
  else if (event.key === 'u') toggleFilter('filter-decision', 'undecided');
  else if (event.key === 'a') toggleFilter('filter-kind', 'audit');
  else if (event.key === '/') $('#filter-class').focus();
  else if (event.key === '?') toggleHelp(true);
  else if (event.key === 'Escape') $('#rows').focus();
  else return;
  event.preventDefault();
}

// ---- counts, the per-class summary, the audit panel
function renderCounts() {
  let undecided = 0;
  for (const row of state.rows) { const d = (current(row.clip) || {}).decision; if (!d || d === 'skip') undecided++; }
  $('#count').textContent = `${state.view.length} of ${state.rows.length} clips shown \u00b7 ${undecided} undecided`;
  $('#count').dataset.shown = state.view.length; $('#count').dataset.undecided = undecided;
  const counts = {};
  for (const row of state.rows) {
    const c = counts[row.given_label] ??= {shown: 0, flagged: 0, decided: 0, relabelled: 0, dropped: 0};
    const d = (current(row.clip) || {}).decision;
    c.shown++; if (row.kind === 'flagged') c.flagged++;
    if (d && d !== 'skip') c.decided++; if (d === 'relabel') c.relabelled++; if (d === 'drop') c.dropped++;
  }
  const fields = ['shown', 'flagged', 'decided', 'relabelled', 'dropped'];
  $('#summary').replaceChildren(el('tr', {}, el('th', {text: 'given class'}), ...fields.map(f => el('th', {text: f}))),
    ...Object.keys(counts).sort().map(name => el('tr', {'data-class': name, title: `show ${name} only`}, el('td', {text: name}),
      ...fields.map(f => el('td', {'data-field': f, text: String(counts[name][f])})))));
}
function renderAudit() {
  const box = $('#audit'), a = state.audit;
  box.hidden = !a; if (!a) return;
  const kept = Object.entries(a.kept_iterations).map(([folder, it]) => `${folder}: round ${it}`).join(', ');
  box.dataset.checked = a.checked; box.dataset.errors = a.errors; box.dataset.bound = a.precision_lower_bound;
  box.replaceChildren(
    el('div', {}, el('b', {text: 'Audit of the accepted clips. '}),
       `${a.sample_size} clips drawn uniformly at random (seed ${a.seed}) from the ${a.population} clips self-verification accepted in the kept round (${kept}) of rule ${a.rule}. `,
       'Keep a clip whose label is right; relabel or drop one whose label is wrong (an error); skipped clips do not count.'),
    el('div', {}, `Checked ${a.checked} of ${a.sample_size}: `, el('b', {text: `${a.errors} error${a.errors === 1 ? '' : 's'}`}),
       `, ${a.correct} right, ${a.undecided} not yet decided. `,
       a.checked ? el('b', {class: 'bound', text: `Precision of the accepted labels \u2265 ${(a.precision_lower_bound * 100).toFixed(1)}%`}) : 'No bound yet.',
       a.checked ? ` with ${Math.round(a.confidence * 100)}% confidence (exact Clopper-Pearson bound; ${(a.precision_observed * 100).toFixed(1)}% right in the sample). ` : ' ',
       'Written to ', el('code', {text: state.auditFile}), ' for ', el('code', {text: 'run'}), ' and ', el('code', {text: 'verify'}), ' to report. ',
       el('button', {type: 'button', text: 'show the sample (a)', onclick: () => toggleFilter('filter-kind', 'audit')})));
}

// ---- loading
async function load() {
  state.token = new URLSearchParams(location.search).get('token') || '';
  let response, answer;
  try {
    response = await fetch('api/state', {cache: 'no-store', headers: tokenHeader()});
    answer = await response.json();
  } catch (error) { lostServer('cannot load the review'); return; }
  if (!response.ok) { setBanner('load', `Cannot load the review: ${answer.error || response.status}`); return; }
  Object.assign(state, {rows: answer.rows, classes: answer.classes, saved: answer.decisions, audit: answer.audit, confident: answer.confident,
                        pxPerSecond: answer.pixels_per_second, ticks: answer.frequency_ticks, auditFile: answer.audit_file,
                        storageKey: `review-pending:${answer.work_id}`});
  state.rows.forEach(row => state.byClip.set(row.clip, row));
  $('#work').textContent = answer.work;
  $('#rule').textContent = `rule ${answer.rule}${answer.rules.length > 1 ? ` (also in this folder: ${answer.rules.filter(r => r !== answer.rule).join(', ')}; choose with --rule)` : ''}`;
  $('#notes').textContent = answer.notes.join(' \u00b7 ');
  $('#decisions-path').textContent = answer.decisions_file;
  $('#confident-share').textContent = pct(state.confident);
  $('#legend-scale').textContent = String(state.pxPerSecond);
  if (answer.decisions_error) setBanner('file', `The decisions file is rejected: ${answer.decisions_error}. Decisions made now are kept in this page until it is fixed.`);
  const classes = [...new Set(state.rows.map(row => row.given_label))].sort();
  $('#filter-class').append(...classes.map(c => el('option', {value: c, text: c})));
  $('#chooser-list').append(...state.classes.map(c => el('li', {'data-value': c, text: c, role: 'option'})));
  $('#chooser-list').addEventListener('click', event => chooserPick(event.target.closest('li')));
  $('#chooser-input').addEventListener('input', filterChooser);
  $('#chooser').addEventListener('click', event => { if (event.target === $('#chooser')) closeChooser(); });
  $('#help').addEventListener('click', event => { if (event.target === $('#help')) toggleHelp(false); });
  $('#help-button').addEventListener('click', () => toggleHelp(true));
  $('#rows tbody').addEventListener('click', event => {
    const tr = event.target.closest('tr'); if (!tr) return;
    select(tr.dataset.clip);
    const button = event.target.closest('button[data-action]');
    if (button) { button.blur(); $('#rows').focus(); act(tr.dataset.clip, button.dataset.action); }
  });
  $('#summary').addEventListener('click', event => {
    const tr = event.target.closest('[data-class]'); if (tr) { $('#filter-class').value = tr.dataset.class; applyView(); $('#rows').focus(); }
  });
  for (const id of ['filter-class', 'filter-decision', 'filter-kind', 'sort', 'page-size'])
    $('#' + id).addEventListener('change', () => { state.pageSize = Number($('#page-size').value); applyView(); $('#' + id).blur(); $('#rows').focus(); });
  $('#prev-page').addEventListener('click', () => { turnPage(-1); $('#rows').focus(); });
  $('#next-page').addEventListener('click', () => { turnPage(1); $('#rows').focus(); });
  document.addEventListener('keydown', onKey);
  window.addEventListener('beforeunload', event => { if (state.pending.length) { event.preventDefault(); event.returnValue = ''; } });
  new ResizeObserver(measureBar).observe($('#bar'));
  state.pending = restorePending();
  state.pageSize = Number($('#page-size').value);
  applyView(null);
  renderAudit(); updateUnsaved();
  $('#rows').focus();
  document.body.dataset.ready = 'true';
  setInterval(ping, PING_MS);
  flush();
}
document.addEventListener('DOMContentLoaded', load);
