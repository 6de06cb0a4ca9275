"""Reader for the IDX file format of MNIST-like datasets (gzipped or not)."""

import gzip
import os
import zlib

import numpy as np

# The third byte of the magic number codes the element type (LeCun's MNIST page).
_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path):
    """Returns the array stored in the IDX file at `path` (`.gz` is decompressed)."""
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        # gzip's EOFError would otherwise read as the user aborting (click prints only "Aborted!").
        raise ValueError(
            f"{path} is truncated or corrupt: it cannot be decompressed ({error}). Download or copy it again."
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()}).")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_end != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: the header promises {expected} bytes of data, "
            f"the file has {len(data) - header_end}."
        )
    return np.frombuffer(data, dtype, offset=header_end).reshape(shape).astype(dtype.newbyteorder("="))
