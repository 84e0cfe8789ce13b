"""Fidelity on realistic footage: the pixels extraction feeds CLIP against CLIPImageProcessor's, and what
the old decoder-side resize cost in features.

    .venv/bin/python bench/fidelity.py            # needs scikit-image (pip install -e .[test])

For each clip (camera moves over scikit-image photographs, H.264 / VP9, several sizes):
  ours_diff      mean |pixels_for - CLIPImageProcessor| in normalised units (both CLIP input sizes)
  scaler_diff    the same for frames resized by the decoder while decoding (PyAV's bicubic scaler),
                 the harness's path before it decoded at full size
  feature_cos    mean per-frame cosine between CLIP ViT-B/32 features (full-size architecture, random
                 weights: nothing to download) of the two pixel paths
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import print_table  # noqa: E402

CLIPS = [("coffee", 1920, 1080, "h264"), ("astronaut", 1280, 720, "vp9"), ("rocket", 640, 360, "h264"),
         ("chelsea", 640, 360, "vp9"), ("immunohistochemistry", 200, 112, "vp9"), ("hubble_deep_field", 360, 640, "h264")]


def main() -> None:
    import av
    import numpy as np
    import torch
    import transformers

    from mediaeval_mem.encoders import encoder_recipe
    from mediaeval_mem.encoders.preprocess import ImageTransform
    from mediaeval_mem.features.pixels import pixels_for
    from mediaeval_mem.video.decode import resized_hw
    from mediaeval_mem.video.footage import FootageSpec, write_footage

    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    b32 = encoder_recipe("clip-vit-b32", "random").load().float().eval()
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for photo, w, h, codec in CLIPS:
            spec = FootageSpec(photo, w, h, codec, frames=12)
            path = write_footage(Path(tmp) / f"{photo}-{w}x{h}{spec.suffix}", spec)
            with av.open(str(path)) as c:
                full = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            entry = {}
            for name, size in (("clip-vit-b32", 224), ("clip-vit-l14-336", 336)):
                ref = processor_cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})(
                    images=full, return_tensors="np")["pixel_values"]
                ours = pixels_for(name, path, backend="pyav")
                th, tw = resized_hw(h, w, size)
                with av.open(str(path)) as c:
                    small = np.stack([f.to_ndarray(format="rgb24", height=th, width=tw, interpolation="BICUBIC")
                                      for f in c.decode(video=0)])
                t = ImageTransform(size, size)
                scaler = t.normalize(t.resize_crop(torch.from_numpy(small)))
                entry[f"ours_diff_{size}"] = float(np.abs(ours.numpy() - ref).mean())
                entry[f"scaler_diff_{size}"] = float(np.abs(scaler.numpy() - ref).mean())
                if size == 224:
                    with torch.inference_mode():
                        a, b = b32(ours), b32(scaler)
                    entry["feature_cos_b32"] = float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())
            figures[f"{w}x{h}-{codec}"] = {k: round(v, 5) for k, v in entry.items()}
            rows.append((f"{w}x{h} {codec} ({photo})", f"{entry['ours_diff_224']:.4f} / {entry['ours_diff_336']:.4f}     "
                         f"{entry['scaler_diff_224']:.4f} / {entry['scaler_diff_336']:.4f}     {entry['feature_cos_b32']:.5f}"))
    print_table([("clip", "ours |diff| 224 / 336   scaler |diff| 224 / 336   B/32 cosine")] + rows)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
