"""Video decoding and frame sampling."""

from mediaeval_mem.video.decode import decode, probe
from mediaeval_mem.video.sampling import Sampling

__all__ = ["Sampling", "decode", "probe"]
