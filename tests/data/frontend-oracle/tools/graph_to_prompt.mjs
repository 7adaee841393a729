#!/usr/bin/env node
// Run ComfyUI's REAL web frontend (served by a running ComfyUI) on UI workflow files and record
// what `app.graphToPrompt()` produces (the API prompt `output`).
//
// usage: node graph_to_prompt.mjs [--diag DIR] [--no-reload] OUT_DIR WORKFLOW.json...
//   OUT_DIR/<name>.api.json        the `output` of graphToPrompt, pretty JSON, key order as produced
//   OUT_DIR/<name>.api.error.txt   instead, when loading or converting threw
//   DIR/<name>.diag.json           (--diag) missing node types, console errors/warnings seen during the load,
//                                  and a diff of app.graph.serialize() after loading vs. the given file
// <name> = file name without ".ui.json" / ".json".
// env: COMFY_URL (default http://127.0.0.1:8199/), CHROMIUM (default /usr/bin/chromium),
//      ORACLE_TOOL_DIR (where playwright-core is installed, default ~/.cache/wan-pilot-oracle-tool).
import fs from 'node:fs';
import path from 'node:path';
import { openComfy, closeDialogs, missingTypes, jsonDiff } from './lib.mjs';

const args = process.argv.slice(2);
let diagDir = null;
let reload = true;
const pos = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--diag') diagDir = args[++i];
  else if (args[i] === '--no-reload') reload = false;
  else if (args[i] === '-h' || args[i] === '--help') { pos.length = 0; break; }
  else pos.push(args[i]);
}
if (pos.length < 2) {
  console.error('usage: node graph_to_prompt.mjs [--diag DIR] [--no-reload] OUT_DIR WORKFLOW.json...');
  process.exit(2);
}
const [outDir, ...inputs] = pos;
fs.mkdirSync(outDir, { recursive: true });
if (diagDir) fs.mkdirSync(diagDir, { recursive: true });

const baseName = (f) => path.basename(f).replace(/\.ui\.json$/, '').replace(/\.json$/, '');
const log = (s) => console.error(`[graph_to_prompt] ${s}`);

const session = await openComfy({ log });
const { page, consoleLines } = session;
let failures = 0;
try {
  for (let i = 0; i < inputs.length; i++) {
    const file = inputs[i];
    const name = baseName(file);
    const wf = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (i > 0 && reload) {
      await page.reload({ waitUntil: 'domcontentloaded' });
      await page.waitForFunction(() => window.app?.graph && window.app?.rootGraph
        && window.LiteGraph?.registered_node_types?.KSampler, null, { timeout: 180000 });
      await page.waitForTimeout(1500);
      await closeDialogs(page);
    }
    const missing = await missingTypes(page, wf);
    const c0 = consoleLines.length;
    const r = await page.evaluate(async (wf) => {
      const app = window.app;
      const res = {};
      try {
        await app.loadGraphData(wf, true, true, null, { showMissingNodesDialog: false, showMissingModelsDialog: false });
      } catch (e) { res.loadError = String(e?.stack ?? e); }
      try { res.loaded = app.rootGraph.serialize(); } catch (e) { res.serializeError = String(e?.stack ?? e); }
      res.errorDialogs = [...document.querySelectorAll('.p-dialog')].map((d) => d.innerText.slice(0, 500));
      if (!res.loadError) {
        try {
          const { output } = await app.graphToPrompt();
          res.output = output;
        } catch (e) { res.convertError = String(e?.stack ?? e); }
      }
      return res;
    }, wf);
    await closeDialogs(page);
    const consoleSeen = consoleLines.slice(c0);
    const apiPath = path.join(outDir, `${name}.api.json`);
    const errPath = path.join(outDir, `${name}.api.error.txt`);
    if (r.output) {
      fs.writeFileSync(apiPath, JSON.stringify(r.output, null, 2) + '\n');
      if (fs.existsSync(errPath)) fs.rmSync(errPath);
      log(`${name}: ${Object.keys(r.output).length} prompt nodes -> ${apiPath}` + (missing.length ? ` (missing types: ${missing.join(', ')})` : ''));
    } else {
      failures++;
      fs.writeFileSync(errPath, (r.loadError || r.convertError || 'no output') + '\n');
      log(`${name}: FAILED -> ${errPath}`);
    }
    if (diagDir) {
      const diff = r.loaded ? jsonDiff(wf, r.loaded) : null;
      fs.writeFileSync(path.join(diagDir, `${name}.diag.json`), JSON.stringify({
        input: path.resolve(file), missingTypes: missing, loadError: r.loadError, convertError: r.convertError,
        serializeError: r.serializeError, openDialogs: r.errorDialogs, console: consoleSeen,
        serializeDiff: diff, serialized: r.loaded,
      }, null, 2) + '\n');
    }
  }
} finally {
  await session.close();
}
process.exit(failures ? 1 : 0);
