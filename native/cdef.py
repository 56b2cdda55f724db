"""The cffi declarations, read from the C header that is the single source of truth of the ABI.

Standard library only: the cffi build script loads this file by path (it cannot import the
package), and the loader calls it at run time for a dlopen'ed library.
"""

from __future__ import annotations

from pathlib import Path

HEADER = Path(__file__).resolve().parent / "include" / "edge_kernels.h"
BEGIN = "/* EK_CDEF_BEGIN */"
END = "/* EK_CDEF_END */"


def read_cdef(header: Path = HEADER) -> str:
    """The text between the EK_CDEF markers of the header (cffi strips the comments itself)."""
    text = header.read_text(encoding="utf-8")
    start = text.find(BEGIN)
    stop = text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"{header}: no {BEGIN} ... {END} block")
    return text[start + len(BEGIN) : stop]
