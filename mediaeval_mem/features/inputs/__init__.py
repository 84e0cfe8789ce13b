"""What an encoder reads: registered input kinds (`EncoderInfo.input` is a kind's name).

A kind knows how a dataset item becomes its encoder's input and rows (`fill`), what its part of the
feature key holds (`key`), which sampling it takes (`sampling_refusal`), what one row stands for
(`unit`), and what `mem predict` needs from a new video (`new_video_note`). Extraction, config
validation and `mem predict` ask the kind; none compares the names. The built-in kinds:

    frames    one vector per video frame (CLIP): frames decoded and encoded in batches (features/engine.py)
    clip      one vector per video (I3D): the same decoding, one whole video (in windows) per forward
    captions  one vector per caption (CLIP text towers, sentence-transformers): the dataset's captions
    features  rows read from files someone already extracted (encoders/precomputed.py)
    audio     one vector per window of a video's sound (CLAP, AST): its first audio track, decoded as it is read

A new kind is one module and one registration (a plugin may add its own):

>>> @register_kind("first-frame")
... class FirstFrame(InputKind):
...     unit = "video"
...     def key(self, index, recipe, sampling, dtype): ...
...     def fill(self, job, items, store, report): ...
"""


from mediaeval_mem.features.inputs import audio, captions, stored, video  # noqa: F401  (the built-in kinds register themselves)
from mediaeval_mem.features.inputs.base import INPUT_KINDS, Extraction, InputKind, input_kind, register_kind

__all__ = ["INPUT_KINDS", "Extraction", "InputKind", "input_kind", "register_kind"]
