// Shared browser setup for the frontend-oracle tools.
// playwright-core is NOT installed in the repo: it is resolved from $ORACLE_TOOL_DIR
// (default ~/.cache/wan-pilot-oracle-tool, created with `npm install --prefix ~/.cache/wan-pilot-oracle-tool playwright-core@1.65.1`),
// then from each $NODE_PATH entry, then by a plain import.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

function loadPlaywright() {
  const dirs = [process.env.ORACLE_TOOL_DIR || path.join(os.homedir(), '.cache', 'wan-pilot-oracle-tool'),
    ...(process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean)];
  for (const d of dirs) {
    try {
      const req = createRequire(path.join(path.resolve(d), 'noop.js'));
      return req('playwright-core');
    } catch { /* try next */ }
  }
  return null;
}

export async function playwright() {
  const pw = loadPlaywright();
  if (pw) return pw;
  return await import('playwright-core');
}

export const COMFY_URL = process.env.COMFY_URL || 'http://127.0.0.1:8199/';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Launch Chromium with a fresh profile and open the ComfyUI frontend; resolves when window.app is ready. */
export async function openComfy({ log = () => {} } = {}) {
  const { chromium } = await playwright();
  const udd = fs.mkdtempSync(path.join(os.tmpdir(), 'frontend-oracle-'));
  const ctx = await chromium.launchPersistentContext(udd, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1600, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const consoleLines = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(`${m.type()}: ${m.text().slice(0, 500)}`);
  });
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${String(e).slice(0, 500)}`));
  // Native confirm()/alert()/prompt() must never block the run.
  page.on('dialog', (d) => { consoleLines.push(`native-dialog(${d.type()}): ${d.message()}`); d.accept().catch(() => {}); });
  await page.goto(COMFY_URL, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => window.app?.graph && window.app?.canvas && window.app?.rootGraph
    && window.LiteGraph?.registered_node_types?.KSampler, null, { timeout: 180000 });
  // Let startup finish (restored workflow, template browser), then dismiss whatever dialog is open.
  await page.waitForTimeout(2000);
  await closeDialogs(page);
  const info = await page.evaluate(() => ({
    frontendVersion: window.__COMFYUI_FRONTEND_VERSION__ ?? null,
    validateWorkflows: window.app.extensionManager?.setting?.get?.('Comfy.Validation.Workflows'),
    sortNodeIdOnSave: window.app.extensionManager?.setting?.get?.('Comfy.Workflow.SortNodeIdOnSave'),
  }));
  log(`frontend ${info.frontendVersion} at ${COMFY_URL} (Comfy.Validation.Workflows=${info.validateWorkflows})`);
  return {
    ctx, page, info, consoleLines, udd,
    async close() { await ctx.close(); fs.rmSync(udd, { recursive: true, force: true }); },
  };
}

export async function closeDialogs(page) {
  for (let i = 0; i < 3; i++) {
    const n = await page.evaluate(() => document.querySelectorAll('.p-dialog').length);
    if (!n) return;
    await page.keyboard.press('Escape');
    await page.waitForTimeout(300);
  }
}

/** Node types used by a UI workflow (root + subgraph definitions + legacy group nodes) that this frontend does not know. */
export async function missingTypes(page, wf) {
  return await page.evaluate((wf) => {
    const types = new Set();
    const subIds = new Set((wf.definitions?.subgraphs ?? []).map((s) => s.id));
    const add = (nodes) => (nodes ?? []).forEach((n) => n?.type && types.add(n.type));
    add(wf.nodes);
    (wf.definitions?.subgraphs ?? []).forEach((s) => add(s.nodes));
    Object.values(wf.extra?.groupNodes ?? {}).forEach((g) => add(g.nodes));
    return [...types].filter((t) => !subIds.has(t) && !(t in LiteGraph.registered_node_types)
      && !/^workflow[>/]/.test(t)).sort();
  }, wf);
}

/** Deep diff of a given UI workflow vs. what app.rootGraph.serialize() returned after loading it.
 * Nodes / links / subgraphs / subgraph io are matched by id, node inputs/outputs by name. Cosmetic keys are ignored,
 * and so are keys the frontend merely ADDS with cosmetic content (see ADDED_NOISE, and unlinked widget inputs that
 * this frontend writes for every widget). Returns [{path, given, loaded}]. */
const COSMETIC = new Set(['pos', 'size', 'order', 'flags', 'ds', 'frontendVersion', 'bounding', 'color', 'bgcolor',
  'shape', 'localized_name', 'slot_index', 'revision', 'pinned', 'workflowRendererVersion']);
const ADDED_NOISE = new Set(['color_off', 'color_on', 'dir', 'label', 'locked', 'nameLocked', 'removable',
  'showAdvanced', 'reroutes', 'floatingLinks', 'Node name for S&R', 'aux_id', 'cnr_id', 'ver', 'linkExtensions']);
const isEmpty = (v) => v == null || v === '' || (Array.isArray(v) && !v.length)
  || (typeof v === 'object' && !Array.isArray(v) && (!Object.keys(v).length || (Object.keys(v).length === 1 && Array.isArray(v.subgraphs) && !v.subgraphs.length)));
export function jsonDiff(a, b, p = '$', out = []) {
  if (out.length > 400) return out;
  const keyedBy = (arr, k) => Array.isArray(arr) && arr.length && arr.every((x) => x && typeof x === 'object' && !Array.isArray(x) && k in x);
  const key = keyedBy(a, 'id') && keyedBy(b, 'id') ? 'id' : (keyedBy(a, 'name') && keyedBy(b, 'name') ? 'name' : null);
  if (key) {
    const ma = new Map(a.map((x) => [String(x[key]), x]));
    const mb = new Map(b.map((x) => [String(x[key]), x]));
    for (const [k, v] of ma) if (!mb.has(k)) out.push({ path: `${p}[${key}=${k}]`, given: summarize(v), loaded: '(absent)' });
    for (const [k, v] of mb) {
      if (ma.has(k)) continue;
      if (key === 'name' && v.widget && v.link == null) continue; // unlinked widget socket, always written
      out.push({ path: `${p}[${key}=${k}]`, given: '(absent)', loaded: summarize(v) });
    }
    for (const [k, v] of ma) if (mb.has(k)) jsonDiff(v, mb.get(k), `${p}[${key}=${k}]`, out);
    return out;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (!a.length && b.every((x) => x && typeof x === 'object' && x.widget && x.link == null)) return out;
    if (a.length !== b.length) { out.push({ path: p, given: a, loaded: b }); return out; }
    a.forEach((x, i) => jsonDiff(x, b[i], `${p}[${i}]`, out));
    return out;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (COSMETIC.has(k)) continue;
      if (!(k in b)) out.push({ path: `${p}.${k}`, given: summarize(a[k]), loaded: '(absent)' });
      else if (!(k in a)) {
        if (ADDED_NOISE.has(k) || isEmpty(b[k])) continue;
        out.push({ path: `${p}.${k}`, given: '(absent)', loaded: summarize(b[k]) });
      } else jsonDiff(a[k], b[k], `${p}.${k}`, out);
    }
    return out;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path: p, given: a, loaded: b });
  return out;
}
function summarize(v) {
  const s = JSON.stringify(v);
  return s && s.length > 300 ? s.slice(0, 300) + '…' : v;
}
