#!/usr/bin/env python3
"""usage: swap_text_encoders.py CONVERTED.json OUT.json
Replaces the text-encoder nodes of wan-pilot's converted official t2v prompt by ZeroWanConditioning,
as tiny-wan's tiny_t2v_two_pass.api.json does (positive #89 seed 1, negative #72 seed 2, both
tokens 16, same node ids so every link stays), and drops CLIPLoader #71. Nothing else changes."""
import json, sys
p = json.load(open(sys.argv[1]))
assert p['89']['class_type'] == 'CLIPTextEncode' and p['72']['class_type'] == 'CLIPTextEncode' and p['71']['class_type'] == 'CLIPLoader'
p['89'] = {"inputs": {"tokens": 16, "seed": 1}, "class_type": "ZeroWanConditioning", "_meta": {"title": "CLIP Text Encode (Positive Prompt)"}}
p['72'] = {"inputs": {"tokens": 16, "seed": 2}, "class_type": "ZeroWanConditioning", "_meta": {"title": "CLIP Text Encode (Negative Prompt)"}}
del p['71']
for k, n in p.items():
    for v in n['inputs'].values():
        assert not (isinstance(v, list) and v and v[0] == '71'), k
json.dump(p, open(sys.argv[2], 'w'), indent=2, ensure_ascii=False)
