"""Model files: one ``.safetensors`` file = weights + JSON metadata.

The metadata (safetensors header ``__metadata__["xray_model"]``) makes a model
self-describing, like torchxrayvision's models: architecture, class names,
positive class, input size, preprocessing, decision threshold and operating
points, training provenance and test metrics.  A SHA-256 of the weights is
stored too and checked on load, so a tampered file is refused.

Loading never executes code: safetensors holds raw tensors only, and the
architecture is rebuilt from our own code by name.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.common import atomic
from training.common.constants import ARCH_LABELS, ARCHITECTURES
from training.common.errors import ModelFileError, XrayError
from training.common.formatting import version_label

if TYPE_CHECKING:  # pragma: no cover - torch is imported by the functions that need it (a run from cached
    import torch  # ONNX Runtime graphs reads headers and hashes here without importing it)
    import torch.nn as nn

FORMAT = "xray-cxr-model"
FORMAT_VERSION = 2  # 2: three-class models and the lesion decoder (model v2); version-1 files still load
META_KEY = "xray_model"


class MetaRecord:
    """A dataclass that is stored as JSON in a model file's metadata; reading
    ignores keys this version does not know (files from newer versions)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def state_tensors(model: "nn.Module", *, half: bool = False) -> dict[str, "torch.Tensor"]:
    """A (DDP-unwrapped) model's state dict as contiguous CPU tensors; ``half``: fp16 floats."""
    sd = model.module.state_dict() if hasattr(model, "module") else model.state_dict()
    out = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        out[k] = v.contiguous()
    return out


def write_tensors(tensors: dict[str, "torch.Tensor"], meta_key: str, meta: dict[str, Any], path) -> Path:
    """safetensors file with ``meta`` (JSON) under ``meta_key`` and the weights' SHA-256, atomically."""
    from safetensors.torch import save_file

    meta_json = json.dumps(meta)
    digest = weights_digest(tensors)
    header = {meta_key: meta_json, "weights_sha256": digest, "metadata_sha256": metadata_digest(meta_json, digest)}
    out = Path(path)
    atomic.write_with(out, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return out


def metadata_digest(meta_json: str, weights_sha256: str) -> str:
    """SHA-256 over the metadata text and the weights' digest: an edited
    threshold, class name or input size is detected like an edited weight."""
    return hashlib.sha256((meta_json + "\n" + weights_sha256).encode("utf-8")).hexdigest()


def check_metadata_digest(name: str, header: dict[str, str], meta_key: str) -> None:
    """``ModelFileError`` unless the stored metadata digest matches."""
    stored = header.get("metadata_sha256")
    if not stored:
        raise ModelFileError(f"{name} has no metadata checksum (written by an older version of this program); "
                             "re-export it with this version to use it.")
    if metadata_digest(header.get(meta_key, ""), header.get("weights_sha256", "")) != stored:
        raise ModelFileError(f"{name}: the model's description (threshold, classes, input size ...) does not match "
                             "its checksum; the file was altered or damaged.")


@dataclass
class FileContents:
    """A safetensors model file read once: its header metadata, its tensors (not yet checked)
    and the SHA-256 of the file's bytes (the audit stamp's)."""

    header: dict[str, str]
    tensors: dict[str, "torch.Tensor"]
    sha256: str
    data: bytes = b""  # the file's bytes (dropped once the tensors are made from them)


def read_file_bytes(path) -> FileContents:
    """Read a safetensors file in one go (one ``open``), without torch: the header parsed from the
    bytes (8-byte length, JSON), the file hashed from them; ``tensors`` left empty, ``data`` kept."""
    import struct

    p = Path(path)
    try:
        data = p.read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n]).get("__metadata__") or {}
    except Exception as exc:
        raise ModelFileError(f"{p.name} is not a readable model file (damaged, truncated, or not a .safetensors "
                             "file).") from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{p.name} is not a readable model file (damaged metadata).")
    return FileContents(header={str(k): str(v) for k, v in header.items()}, tensors={},
                        sha256=hashlib.sha256(data).hexdigest(), data=data)


_NUMPY_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}


def numpy_tensors(contents: FileContents, prefixes: tuple[str, ...]) -> dict[str, "np.ndarray"]:
    """The tensors whose names start with one of ``prefixes``, as float32 NumPy arrays, sliced from the
    bytes :func:`read_file_bytes` read (the same bytes that were hashed; no torch)."""
    import struct

    data = contents.data
    (n,) = struct.unpack("<Q", data[:8])
    out = {}
    for name, entry in json.loads(data[8:8 + n]).items():
        if name == "__metadata__" or not name.startswith(prefixes):
            continue
        start, stop = (8 + n + int(v) for v in entry["data_offsets"])
        arr = np.frombuffer(data[start:stop], dtype=_NUMPY_DTYPES[entry["dtype"]]).reshape(entry["shape"])
        out[name] = arr.astype(np.float32)
    return out


def with_tensors(contents: FileContents, name: str) -> FileContents:
    """``contents`` with its tensors loaded (torch) from the bytes read by :func:`read_file_bytes`."""
    from safetensors.torch import load as load_bytes

    if not contents.tensors:
        try:
            contents.tensors = load_bytes(contents.data)
        except Exception as exc:
            raise ModelFileError(f"{name} is not a readable model file (damaged, truncated, or not a .safetensors "
                                 "file).") from exc
        contents.data = b""
    return contents


def read_file_once(path, what: str = "weights") -> FileContents:
    """Read a safetensors file in one go (one ``open``): the header is parsed from the bytes
    (8-byte length, JSON), the tensors loaded from the same bytes, the file hashed from them."""
    return with_tensors(read_file_bytes(path), Path(path).name)


def verified_tensors(name: str, contents: FileContents, what: str = "weights") -> dict[str, "torch.Tensor"]:
    """The file's tensors, checked against their stored SHA-256 (``ModelFileError`` otherwise)."""
    expected = contents.header.get("weights_sha256")
    if not expected or weights_digest(contents.tensors) != expected:
        raise ModelFileError(f"{name}: the {what} do not match their checksum; the file was altered or damaged.")
    return contents.tensors


def record_from_header(name: str, header: dict[str, str], meta_key: str, fmt: str, fmt_version: int,
                       kind: str) -> dict[str, Any]:
    """The metadata record of a helper model file (segmenter, orientation check) from its header,
    checked: its digest, its format and version (``ModelFileError`` in words otherwise)."""
    try:
        meta = json.loads(header[meta_key])
    except Exception as exc:
        raise ModelFileError(f"{name} is not a readable {kind} file.") from exc
    check_metadata_digest(name, header, meta_key)
    if meta.get("format") != fmt:
        raise ModelFileError(f"{name} is not a {kind} file (format {meta.get('format')!r}).")
    if int(meta.get("format_version", 0)) > fmt_version:
        raise ModelFileError(f"{name} was written by a newer version of this program; update it to open the file.")
    return meta


def read_header(path, kind: str) -> dict[str, str]:
    """Only the header metadata of a safetensors file (dialogs, cards)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{kind[0].upper()}{kind[1:]} file not found: {p}")
    try:
        with safe_open(str(p), framework="numpy") as fh:
            return fh.metadata() or {}
    except Exception as exc:
        raise ModelFileError(f"{p.name} is not a readable {kind} file.") from exc


def read_verified_tensors(path, what: str = "weights") -> dict[str, "torch.Tensor"]:
    """The tensors of a model file, checked against their stored SHA-256 (``ModelFileError`` otherwise)."""
    return verified_tensors(Path(path).name, read_file_once(path, what), what)


@dataclass
class ModelInfo(MetaRecord):
    """What a model file says about itself."""

    arch: str
    name: str = ""
    version: str = "1"
    class_names: list[str] = field(default_factory=lambda: ["Normal", "COVID"])
    positive_class: str = "COVID"
    input_size: int = 224
    preprocessing: dict[str, Any] = field(default_factory=lambda: {
        "resize": "bilinear, antialiased, aspect ratio not kept",
        "scale": "pixel / 255 (loader output in [0, 1])",
        "channels": "grey repeated to 3",
        "normalize": None,
    })
    threshold: float = 0.5
    operating_points: dict[str, float] = field(default_factory=dict)
    dropout: float = 0.5
    created: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    calibration: dict[str, Any] = field(default_factory=dict)  # {"method": "temperature", "temperature": T, ...}
    band: list[float] = field(default_factory=list)  # [lo, hi] borderline band of calibrated P; [] = none
    lesion_head: bool = False  # the model also outputs a lesion probability map (model v2)
    sequence_order: str = "raster"  # ResNet50-LSTM: how the feature map becomes a sequence (networks.SEQUENCE_ORDERS)
    # three-class models: P(Pneumonia) / (P(Pneumonia) + P(Normal)) at or above this -> "Other pneumonia"
    pneumonia_threshold: float = 0.5
    # the validated int8 fast mode (training.inference.engine_fast): recipe, quantisation ranges, validation
    fast_mode: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The model's name as shown (without its version; ``LoadedModel.display_name`` adds it)."""
        return self.name or ARCH_LABELS.get(self.arch, self.arch)

    @property
    def temperature(self) -> float:
        return float((self.calibration or {}).get("temperature", 1.0))

    @property
    def multiclass(self) -> bool:
        """More than two classes: softmax over one logit per class (model v2)."""
        return len(self.class_names) > 2


@dataclass
class LoadedModel:
    model: nn.Module
    info: ModelInfo
    path: Path | None = None
    sha256: str = ""  # of the file's bytes, computed when it was read (the audit stamp's digest)

    @property
    def display_name(self) -> str:
        return version_label(self.info.title, self.info.version)


def weights_digest(tensors: dict[str, "torch.Tensor"]) -> str:
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        # reshape(-1): a 0-d tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model(model: nn.Module, info: ModelInfo, path: str | os.PathLike, *, half: bool = False) -> Path:
    """Write ``model`` + ``info`` to ``path`` atomically.  ``half`` stores fp16
    weights (half the size; loaded back as fp32)."""
    if info.arch not in ARCHITECTURES:
        raise XrayError(f"unknown architecture {info.arch!r}")
    if not info.created:
        info.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **info.to_dict()}
    return write_tensors(state_tensors(model, half=half), META_KEY, meta, path)


def rewrite_info(path: str | os.PathLike, info: ModelInfo) -> Path:
    """Write ``info`` into the model file at ``path`` with its weights unchanged (verified, same
    bytes, same weights digest), atomically: e.g. a fast mode's validation added after training."""
    p = Path(path)
    tensors = verified_tensors(p.name, read_file_once(p))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **info.to_dict()}
    return write_tensors(tensors, META_KEY, meta, p)


def check_model_path(p: Path) -> None:
    """``ModelFileError`` in words unless ``p`` is a non-empty regular file."""
    if not p.exists():
        raise ModelFileError(f"Model file not found: {p}")
    if p.is_dir():
        raise ModelFileError(f"{p} is a folder, not a model file.")
    if not p.is_file():
        raise ModelFileError(f"{p} is not a regular file (a named pipe or device), not a model file.")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{p.name} is empty (0 bytes).")


def read_info(path: str | os.PathLike) -> tuple[ModelInfo, dict[str, str]]:
    """Read and validate only the metadata (fast; used by 'Open Model' dialogs)."""
    from safetensors import safe_open

    p = Path(path)
    check_model_path(p)
    try:
        with safe_open(str(p), framework="numpy") as fh:
            header = fh.metadata() or {}
    except Exception as exc:
        raise ModelFileError(
            f"{p.name} is not a readable model file (damaged, truncated, or not a .safetensors file).") from exc
    return info_from_header(p.name, header), header


def info_from_header(name: str, header: dict[str, str]) -> ModelInfo:
    """The model's description from a file's header metadata, validated (``ModelFileError``)."""
    if META_KEY not in header:
        raise ModelFileError(f"{name} is a safetensors file but not a chest X-ray model (no model metadata).")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{name}: the model metadata is damaged.") from exc
    if not isinstance(meta, dict):
        raise ModelFileError(f"{name}: the model metadata is damaged (not a record).")
    if meta.get("format") == FORMAT:
        check_metadata_digest(name, header, META_KEY)
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{name} is not a chest X-ray model file (format {meta.get('format')!r}).")
    if not isinstance(meta.get("format_version", 0), int):
        raise ModelFileError(f"{name}: the model metadata is damaged (format version {meta.get('format_version')!r}).")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(
            f"{name} was written by a newer version of this program (format {meta.get('format_version')}); "
            "update the program to open it.")
    if meta.get("arch") not in ARCHITECTURES:
        raise ModelFileError(f"{name} uses an unknown architecture {meta.get('arch')!r}.")
    try:
        info = ModelInfo.from_dict(meta)
    except TypeError as exc:
        raise ModelFileError(f"{name}: the model metadata is incomplete.") from exc
    problem = _metadata_problem(info)
    if problem:
        raise ModelFileError(f"{name}: {problem}")
    return info


MIN_INPUT, MAX_INPUT = 32, 1024


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _metadata_problem(info: ModelInfo) -> str:
    """A plain-language description of the first invalid metadata field, or ''."""
    if not (_number(info.threshold) and 0.0 < info.threshold < 1.0):
        return f"decision threshold {info.threshold!r} is not a number between 0 and 1."
    if not (isinstance(info.input_size, int) and MIN_INPUT <= info.input_size <= MAX_INPUT):
        return f"input size {info.input_size!r} is not a whole number between {MIN_INPUT} and {MAX_INPUT}."
    names = info.class_names
    if not (isinstance(names, list) and len(names) in (2, 3) and all(isinstance(c, str) and c for c in names)
            and len(set(names)) == len(names)):
        return f"class names {names!r} are not two or three different names."
    if info.lesion_head is not False and info.lesion_head is not True:
        return f"lesion head {info.lesion_head!r} is neither true nor false."
    if info.lesion_head and info.arch == "lstm":
        return "the LSTM-only model has no lesion map."
    if len(names) > 2 and info.arch == "lstm":
        return "the LSTM-only model has two classes."
    if not (_number(info.pneumonia_threshold) and 0.0 < info.pneumonia_threshold < 1.0):
        return f"pneumonia threshold {info.pneumonia_threshold!r} is not a number between 0 and 1."
    if info.positive_class not in names:
        return f"positive class {info.positive_class!r} is not one of the classes {names}."
    if not (_number(info.dropout) and 0.0 <= info.dropout < 1.0):
        return f"dropout {info.dropout!r} is not a number between 0 and 1."
    if info.sequence_order not in ("raster", "column"):  # networks.SEQUENCE_ORDERS (this module stays torch-free)
        return f"sequence order {info.sequence_order!r} is neither 'raster' nor 'column'."
    if not all(_number(v) and 0.0 < v < 1.0 for v in (info.operating_points or {}).values()):
        return "an operating point is not a number between 0 and 1."
    t = (info.calibration or {}).get("temperature", 1.0)
    if not (_number(t) and 0.01 <= t <= 100.0):
        return f"calibration temperature {t!r} is not a number between 0.01 and 100."
    band = info.band or []
    if band and not (isinstance(band, list) and len(band) == 2 and all(_number(v) and 0.0 < v < 1.0 for v in band)
                     and band[0] <= info.threshold <= band[1]):
        return f"borderline band {band!r} is not two numbers between 0 and 1 around the threshold."
    prep = info.preprocessing or {}
    try:
        from training.model.lung_input import InputSpec

        InputSpec.from_metadata(prep)
    except (TypeError, ValueError) as exc:
        return f"input preprocessing is not understood ({exc})."
    return ""


def all_finite(t: "torch.Tensor") -> bool:
    """No NaN or infinity in ``t``: for fp16 / fp32 read from the exponent bits (all ones = NaN or
    infinity), three times faster than ``torch.isfinite`` on a 24 M-weight file (a start-up cost)."""
    import torch

    bits = {torch.float16: (torch.int16, 0x7C00), torch.float32: (torch.int32, 0x7F800000)}.get(t.dtype)
    if bits is None:
        return bool(torch.isfinite(t).all())
    as_int, mask = bits
    return not bool(((t.contiguous().view(as_int) & mask) == mask).any())


def load_model(path: str | os.PathLike, device: "torch.device | str" = "cpu") -> LoadedModel:
    """Load and verify a model file; the model is returned in eval mode on ``device``."""
    from training.model.networks import build_model

    p = Path(path)
    check_model_path(p)
    contents = read_file_once(p)  # the one read of the file: metadata, weights and the audit digest
    info = info_from_header(p.name, contents.header)
    tensors = verified_tensors(p.name, contents)
    if not all(all_finite(t) for t in tensors.values() if t.is_floating_point()):
        raise ModelFileError(f"{p.name}: the weights contain invalid numbers (NaN or infinite); the file is damaged.")
    model = build_model(info.arch, "scratch", dropout=float(info.dropout), input_size=int(info.input_size),
                        classes=len(info.class_names), lesion=bool(info.lesion_head), sequence=info.sequence_order)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(
            f"{p.name}: the weights do not fit the {ARCH_LABELS[info.arch]} architecture of this program.") from exc
    model.eval().to(device)
    return LoadedModel(model=model, info=info, path=p, sha256=contents.sha256)


def loaded_from_module(model: "nn.Module", info: ModelInfo) -> LoadedModel:
    """Wrap an in-memory model (tests, the trainer) like a loaded file."""
    return LoadedModel(model=model.eval(), info=info, path=None)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["ModelInfo", "all_finite", "LoadedModel", "save_model", "load_model", "read_info", "loaded_from_module",
           "weights_digest", "file_sha256"]
