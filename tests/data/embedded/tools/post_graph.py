"""Posts the model-free fixture graph to a running ComfyUI and writes posted.json.

Run from tests/data/embedded:  python3 tools/post_graph.py [http://127.0.0.1:8199]
Outputs land in <ComfyUI>/output/wan-pilot-fixture/ (or fetch them with /view); see ../README.md.
"""
import json, sys, time, urllib.request

SERVER = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8199"
P = "wan-pilot-fixture"
prompt = {
  "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 3381759},
        "_meta": {"title": "空图像 EmptyImage"}},
  "8": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744192}},
  "9": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 10027263}},
  "10": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["8", 0]}},
  "11": {"class_type": "ImageBatch", "inputs": {"image1": ["10", 0], "image2": ["9", 0]}},
  "2": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": P + "/png"}},
  "3": {"class_type": "SaveAnimatedPNG", "inputs": {"images": ["11", 0], "filename_prefix": P + "/apng", "fps": 16.0, "compress_level": 4}},
  "4": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["11", 0], "filename_prefix": P + "/webp", "fps": 16.0, "lossless": False, "quality": 80, "method": "default"}},
  "5": {"class_type": "SaveWEBM", "inputs": {"images": ["11", 0], "filename_prefix": P + "/webm", "codec": "vp9", "fps": 16.0, "crf": 32.0}},
  "6": {"class_type": "CreateVideo", "inputs": {"images": ["11", 0], "fps": 16.0}},
  "7": {"class_type": "SaveVideo", "inputs": {"video": ["6", 0], "filename_prefix": P + "/mp4", "format": "auto", "codec": "auto"}},
}
def node(i, t, widgets, inputs=(), outputs=(), title=None):
    n = {"id": i, "type": t, "pos": [100 * i, 100], "size": [270, 120], "flags": {}, "order": i - 1, "mode": 0,
         "inputs": list(inputs), "outputs": list(outputs), "properties": {"Node name for S&R": t}, "widgets_values": widgets}
    if title: n["title"] = title
    return n
img_out = {"name": "IMAGE", "type": "IMAGE", "links": [1, 2, 3, 4, 5], "slot_index": 0}
def img_in(link): return {"name": "images", "type": "IMAGE", "link": link}
workflow = {
  "id": "0b6f7a4e-5d1c-4f8e-9a51-7e3c2d1b0a99", "revision": 0, "last_node_id": 11, "last_link_id": 10,
  "nodes": [
    node(1, "EmptyImage", [64, 64, 1, 3381759], outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [7], "slot_index": 0}], title="空图像 EmptyImage"),
    node(8, "EmptyImage", [64, 64, 1, 16744192], outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [8], "slot_index": 0}]),
    node(9, "EmptyImage", [64, 64, 1, 10027263], outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [10], "slot_index": 0}]),
    node(10, "ImageBatch", [], [{"name": "image1", "type": "IMAGE", "link": 7}, {"name": "image2", "type": "IMAGE", "link": 8}], [{"name": "IMAGE", "type": "IMAGE", "links": [9], "slot_index": 0}]),
    node(11, "ImageBatch", [], [{"name": "image1", "type": "IMAGE", "link": 9}, {"name": "image2", "type": "IMAGE", "link": 10}], [img_out]),
    node(2, "SaveImage", [P + "/png"], [img_in(1)]),
    node(3, "SaveAnimatedPNG", [P + "/apng", 16, 4], [img_in(2)]),
    node(4, "SaveAnimatedWEBP", [P + "/webp", 16, False, 80, "default"], [img_in(3)]),
    node(5, "SaveWEBM", [P + "/webm", "vp9", 16, 32], [img_in(4)]),
    node(6, "CreateVideo", [16], [img_in(5), {"name": "audio", "type": "AUDIO", "link": None}],
         [{"name": "VIDEO", "type": "VIDEO", "links": [6], "slot_index": 0}]),
    node(7, "SaveVideo", [P + "/mp4", "auto", "auto"], [{"name": "video", "type": "VIDEO", "link": 6}]),
  ],
  "links": [[1, 11, 0, 2, 0, "IMAGE"], [2, 11, 0, 3, 0, "IMAGE"], [3, 11, 0, 4, 0, "IMAGE"], [4, 11, 0, 5, 0, "IMAGE"],
            [5, 11, 0, 6, 0, "IMAGE"], [7, 1, 0, 10, 0, "IMAGE"], [8, 8, 0, 10, 1, "IMAGE"], [9, 10, 0, 11, 0, "IMAGE"], [10, 9, 0, 11, 1, "IMAGE"], [6, 6, 0, 7, 0, "VIDEO"]],
  "groups": [], "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4,
}
body = {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": workflow}}, "client_id": "wan-pilot-fixtures"}
json.dump(body, open("posted.json", "w"), indent=1, ensure_ascii=False)
req = urllib.request.Request(SERVER + "/api/prompt", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
r = json.load(urllib.request.urlopen(req)); print(r)
pid = r["prompt_id"]
for _ in range(120):
    h = json.load(urllib.request.urlopen(f"{SERVER}/history/{pid}"))
    if pid in h:
        print(json.dumps(h[pid]["status"])); print(json.dumps(h[pid]["outputs"])); break
    time.sleep(1)
