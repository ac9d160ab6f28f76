"""Readers for checkpoint headers: safetensors and GGUF, standard library only.

They read the header of a file and stop, so a 100 GB checkpoint costs a few megabytes
of reading; every size and count is checked before it is trusted.
:mod:`nnmem.readers.checkpoint` turns what they read into the fields the estimator
takes, with the exact bytes the checkpoint stores.
"""

from nnmem.readers.checkpoint import Imported, WeightSummary, from_gguf, from_safetensors
from nnmem.readers.gguf import GgufFile, read_gguf
from nnmem.readers.safetensors import SafetensorsHeader, read_header, read_index
from nnmem.readers.source import NeedMoreBytes

__all__ = [
    "GgufFile",
    "Imported",
    "NeedMoreBytes",
    "SafetensorsHeader",
    "WeightSummary",
    "from_gguf",
    "from_safetensors",
    "read_gguf",
    "read_header",
    "read_index",
]
