#!/usr/bin/env node
// Build a LEGACY GROUP NODE for real inside the ComfyUI frontend and save what the frontend itself writes.
//
// usage: node make_group_node.mjs OUT_DIR [LIVE_API_DIR]
// In one live session:
//   1. builds UNETLoader -> LoraLoaderModelOnly -> ModelSamplingSD3 -> ModelSamplingSD3 ("after", stays outside)
//      and EmptyHunyuanLatentVideo -> SaveLatent
//      with the LiteGraph API, selects LoraLoaderModelOnly + ModelSamplingSD3 and runs the frontend's own command
//      "Comfy.GroupNode.ConvertSelectedNodesToGroupNode" (answering its name prompt with "LoraShift");
//   2. writes group_node.ui.json (app.rootGraph.serialize()) and, if LIVE_API_DIR is given, group_node.live.api.json
//      there (graphToPrompt output in the live session, before any reload);
//   3. changes two widget values ON the group node (strength_model 0.55, shift 11.5), writes
//      group_node_widget_changed.ui.json (+ .live.api.json);
//   4. sets the group node to mode 4 (bypass), writes group_node_bypassed.ui.json (+ .live.api.json);
//   5. also writes group_node_slash_separator.ui.json = group_node.ui.json with type "workflow/LoraShift".
// Run graph_to_prompt.mjs on the three .ui.json files afterwards to get the *.api.json seen after a reload.
import fs from 'node:fs';
import path from 'node:path';
import { openComfy } from './lib.mjs';

const [outDir, liveDir] = process.argv.slice(2);
if (!outDir) { console.error('usage: node make_group_node.mjs OUT_DIR [LIVE_API_DIR]'); process.exit(2); }
fs.mkdirSync(outDir, { recursive: true });
if (liveDir) fs.mkdirSync(liveDir, { recursive: true });
const log = (s) => console.error(`[make_group_node] ${s}`);
const write = (name, obj, dir = outDir) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, JSON.stringify(obj, null, 2) + '\n');
  log(`wrote ${p}`);
};

const UNET = 'wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors';
const LORA = 'wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors';

const session = await openComfy({ log });
const { page, consoleLines } = session;
try {
  await page.evaluate(async ({ UNET, LORA }) => {
    const app = window.app;
    const blank = { last_node_id: 0, last_link_id: 0, nodes: [], links: [], groups: [], config: {}, extra: {}, version: 0.4 };
    await app.loadGraphData(blank, true, true, null, { showMissingNodesDialog: false, showMissingModelsDialog: false });
    const g = app.rootGraph;
    const mk = (type, pos) => { const n = LiteGraph.createNode(type); n.pos = pos; g.add(n); return n; };
    const set = (n, name, v) => { const w = n.widgets.find((w) => w.name === name); w.value = v; w.callback?.(v); };
    const unet = mk('UNETLoader', [0, 0]);
    set(unet, 'unet_name', UNET);
    const lora = mk('LoraLoaderModelOnly', [400, 0]);
    set(lora, 'lora_name', LORA);
    const msd = mk('ModelSamplingSD3', [800, 0]);
    set(msd, 'shift', 8);
    const after = mk('ModelSamplingSD3', [1200, 0]);
    set(after, 'shift', 3.5);
    const ehl = mk('EmptyHunyuanLatentVideo', [0, 400]);
    set(ehl, 'width', 640);
    const save = mk('SaveLatent', [400, 400]);
    set(save, 'filename_prefix', 'latents/group_node');
    unet.connect(0, lora, 0);
    lora.connect(0, msd, 0);
    msd.connect(0, after, 0);
    ehl.connect(0, save, 0);
    app.canvas.deselectAll();
    app.canvas.select(lora);
    app.canvas.select(msd);
    window.__oracleIds = { unet: unet.id, lora: lora.id, msd: msd.id, after: after.id, ehl: ehl.id, save: save.id };
    // Runs the frontend's command; it opens a "name" prompt dialog that the driver answers below.
    window.__oracleConvert = app.extensionManager.command.execute('Comfy.GroupNode.ConvertSelectedNodesToGroupNode')
      .then(() => 'done', (e) => `error: ${e?.stack ?? e}`);
  }, { UNET, LORA });
  const input = page.locator('.p-dialog input').first();
  await input.waitFor({ timeout: 20000 });
  await input.fill('LoraShift');
  await input.press('Enter');
  const convert = await page.evaluate(() => window.__oracleConvert);
  log(`convert command: ${convert}`);

  const snap = async (name) => {
    const r = await page.evaluate(async () => {
      const app = window.app;
      const groupNodes = app.rootGraph.nodes.filter((n) => /^workflow[>/]/.test(n.type))
        .map((n) => ({ id: n.id, type: n.type, mode: n.mode, widgets: n.widgets?.map((w) => [w.name, w.value]) }));
      return { ui: app.rootGraph.serialize(), api: (await app.graphToPrompt()).output, groupNodes,
        ids: window.__oracleIds };
    });
    log(`${name}: group nodes ${JSON.stringify(r.groupNodes)} (ids before grouping ${JSON.stringify(r.ids)})`);
    write(`${name}.ui.json`, r.ui);
    if (liveDir) write(`${name}.live.api.json`, r.api, liveDir);
    return r;
  };
  const first = await snap('group_node');
  // Same file with the old "workflow/" separator (the frontend rewrites it to "workflow>" on load).
  const slash = structuredClone(first.ui);
  for (const n of slash.nodes) if (n.type.startsWith('workflow>')) n.type = n.type.replace('workflow>', 'workflow/');
  write('group_node_slash_separator.ui.json', slash);

  const changed = await page.evaluate(() => {
    const gn = window.app.rootGraph.nodes.find((n) => /^workflow[>/]/.test(n.type));
    const out = [];
    for (const w of gn.widgets ?? []) {
      if (/strength_model$/.test(w.name)) { w.value = 0.55; w.callback?.(0.55); out.push(w.name); }
      if (/shift$/.test(w.name)) { w.value = 11.5; w.callback?.(11.5); out.push(w.name); }
    }
    return out;
  });
  log(`changed widgets: ${JSON.stringify(changed)}`);
  await snap('group_node_widget_changed');

  await page.evaluate(() => {
    const gn = window.app.rootGraph.nodes.find((n) => /^workflow[>/]/.test(n.type));
    gn.mode = 4;
  });
  await snap('group_node_bypassed');
  const errs = consoleLines.filter((l) => !/ERR_NAME_NOT_RESOLVED|internal module/.test(l));
  if (errs.length) log(`console:\n  ${errs.join('\n  ')}`);
} finally {
  await session.close();
}
