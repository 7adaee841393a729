"""VideoHelperSuite-style metadata, made without VHS (PyAV drives the same ffmpeg muxers).

Run from tests/data/embedded:  python3 tools/vhs_comment.py vhs-comment.mp4 vhs-comment.mov
"""
# VideoHelperSuite-style metadata: one `comment` tag = json.dumps({"prompt": json.dumps(prompt), "workflow": workflow}),
# written by ffmpeg's mp4/mov muxers WITHOUT use_metadata_tags (so it lands in ©cmt).
import json, sys, numpy as np, av
from fractions import Fraction
posted = json.load(open("posted.json"))
prompt = posted["prompt"]; workflow = posted["extra_data"]["extra_pnginfo"]["workflow"]
comment = json.dumps({"prompt": json.dumps(prompt), "workflow": workflow})
for name in sys.argv[1:]:
    c = av.open(name, mode="w")
    c.metadata["comment"] = comment
    s = c.add_stream("h264", rate=Fraction(16)); s.width = 64; s.height = 64; s.pix_fmt = "yuv420p"
    for color in (0x33, 0x99, 0xff):
        f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), color, np.uint8), format="rgb24").reformat(format="yuv420p")
        for p in s.encode(f): c.mux(p)
    for p in s.encode(): c.mux(p)
    c.close()
