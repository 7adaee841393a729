#!/usr/bin/env python3
"""usage: post_and_wait.py API_PROMPT.json [UI_WORKFLOW.json]
POSTs {"prompt", "client_id": "x"[, "extra_data": {"extra_pnginfo": {"workflow": UI}}]} to
http://127.0.0.1:8199/api/prompt, polls /api/history/<id> (no websocket) until success/error,
prints status, wall time and outputs; writes the history entry to ./history_<id>.json."""
import json, sys, time, urllib.request
B = "http://127.0.0.1:8199"
prompt = json.load(open(sys.argv[1]))
body = {"prompt": prompt, "client_id": "x"}
if len(sys.argv) > 2:
    body["extra_data"] = {"extra_pnginfo": {"workflow": json.load(open(sys.argv[2]))}}
t0 = time.time()
try:
    r = urllib.request.urlopen(urllib.request.Request(B + "/api/prompt", json.dumps(body).encode(), {"Content-Type": "application/json"}))
    resp = json.load(r)
except urllib.error.HTTPError as e:
    print("HTTP", e.code, e.read().decode()); sys.exit(1)
print("queued", resp)
pid = resp["prompt_id"]
while True:
    h = json.load(urllib.request.urlopen(f"{B}/api/history/{pid}"))
    if pid in h and h[pid].get("status", {}).get("completed") is not None and (h[pid]["status"]["status_str"] in ("success", "error")):
        break
    time.sleep(0.5)
dt = time.time() - t0
st = h[pid]["status"]
print("status", st["status_str"], "wall %.1fs" % dt)
for m in st.get("messages", []):
    if m[0] in ("execution_start", "execution_success", "execution_error", "execution_interrupted", "execution_cached"):
        print(" msg", m[0], json.dumps(m[1])[:1500])
json.dump(h[pid], open(f"history_{pid}.json", "w"), indent=1)
for nid, out in h[pid].get("outputs", {}).items():
    for k, v in out.items():
        if isinstance(v, list):
            print(" out", nid, k, len(v), json.dumps(v[:2])[:300])
        else:
            print(" out", nid, k, json.dumps(v)[:300])
