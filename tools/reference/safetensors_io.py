"""Reading and writing safetensors files with numpy alone (no safetensors package).

Layout: an 8-byte little-endian header length, a JSON header mapping each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data area) plus an
optional "__metadata__" dict of strings, then the tensor bytes.

Supported dtypes: F32, F16, BF16, F8_E4M3 (reading), I32, I64, U8. numpy has no bfloat16, so BF16
tensors are widened to float32 on reading, and written from float32 with round-to-nearest-even
when the writer is asked for BF16. An F8_E4M3 tensor is read as float32 times its scale, the
metadata value under SCALE_PREFIX + its name (as the C reader takes it).
"""

import json
import os
import struct

import numpy as np

_NUMPY_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
}
_SAFETENSORS_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int32"): "I32",
    np.dtype("int64"): "I64",
    np.dtype("uint8"): "U8",
}
_MAX_HEADER_BYTES = 64 << 20


def bf16_bits_to_float32(bits):
    """uint16 bfloat16 bit patterns -> float32 values (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16_bits(values):
    """float32 values -> uint16 bfloat16 bit patterns, rounding to nearest even (NaN kept NaN)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
    rounded = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    rounded[nan] = ((bits[nan] >> 16) | np.uint32(0x0040)).astype(np.uint16)
    return rounded


def _e4m3_values():
    """The float32 value of each of the 256 F8_E4M3 bit patterns (bias 7, no infinities)."""
    codes = np.arange(256)
    exponent, mantissa = (codes >> 3) & 15, (codes & 7).astype(np.float64)
    values = np.where(exponent == 0, mantissa * 2.0 ** -9, (8 + mantissa) * 2.0 ** (exponent - 10.0))
    values[(codes & 0x7F) == 0x7F] = np.nan
    return np.where(codes & 0x80, -values, values).astype(np.float32)


_E4M3 = _e4m3_values()
PARTS_KEY = "vdmini.parts"
SCALE_PREFIX = "vdmini.scale."


def read_safetensors(path):
    """Returns (tensors, metadata): tensors maps name -> numpy array (BF16 widened to float32),
    metadata is the __metadata__ dict (empty when absent). A file whose metadata names parts
    (PARTS_KEY: comma-separated file names beside it, as the C reader takes them) brings their
    tensors too."""
    tensors, metadata, scaled = _read_one(path)
    for name in filter(None, metadata.get(PARTS_KEY, "").split(",")):
        if "/" in name or name.startswith("."):
            raise ValueError(f"{path}: bad part name {name!r} (a file name beside it)")
        part_path = os.path.join(os.path.dirname(path), name)
        part, part_metadata, part_scaled = _read_one(part_path)
        if PARTS_KEY in part_metadata:
            raise ValueError(f"{part_path}: a part names parts of its own")
        for tensor in part:
            if tensor in tensors:
                raise ValueError(f"{part_path}: tensor {tensor} is in an earlier part too")
        tensors.update(part)
        scaled |= part_scaled
    for key, value in metadata.items():
        if key.startswith(SCALE_PREFIX) and key[len(SCALE_PREFIX):] not in scaled:
            raise ValueError(f"{path}: metadata {key}: a scale for a tensor that is not F8_E4M3")
    for name in scaled:
        scale = float(metadata.get(SCALE_PREFIX + name, "nan"))
        if not (0 < scale < float("inf")):
            raise ValueError(f"{path}: tensor {name}: F8_E4M3 without a positive scale")
        tensors[name] = tensors[name] * np.float32(scale)
    return tensors, metadata


def _read_one(path):
    """read_safetensors of one file, without following its parts or scaling: (tensors, metadata,
    the names of the F8_E4M3 tensors)."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(len(data) - 8, _MAX_HEADER_BYTES):
        raise ValueError(f"{path}: header length {header_len} does not fit the file")
    header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    data_size = len(data) - data_start
    tensors, scaled = {}, set()
    for name, info in header.items():
        dtype_name = info["dtype"]
        if dtype_name not in _NUMPY_DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype_name}")
        dtype = _NUMPY_DTYPES[dtype_name]
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= begin <= end <= data_size) or end - begin != count * dtype.itemsize:
            raise ValueError(f"{path}: tensor {name}: byte range {begin}..{end} does not match "
                             f"shape {list(shape)} of {dtype_name} or the file")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=data_start + begin)
        array = array.reshape(shape)
        if dtype_name == "BF16":
            array = bf16_bits_to_float32(array)
        elif dtype_name == "F8_E4M3":
            array = _E4M3[array]
            scaled.add(name)
        tensors[name] = array
    return tensors, metadata, scaled


def write_safetensors(path, tensors, metadata=None, dtypes=None):
    """Writes tensors (name -> numpy array of float32, float16, int32, int64 or uint8) and
    metadata (str -> str) to path, through a temporary file and a rename. dtypes may map a name
    to "BF16" to store that float tensor as bfloat16."""
    dtypes = dtypes or {}
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        if dtypes.get(name) == "BF16":
            dtype_name = "BF16"
            blob = float32_to_bf16_bits(array.astype(np.float32)).astype("<u2").tobytes()
        else:
            if array.dtype not in _SAFETENSORS_DTYPES:
                raise ValueError(f"tensor {name}: cannot store numpy dtype {array.dtype}")
            dtype_name = _SAFETENSORS_DTYPES[array.dtype]
            blob = array.astype(_NUMPY_DTYPES[dtype_name]).tobytes()
        header[name] = {"dtype": dtype_name, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
