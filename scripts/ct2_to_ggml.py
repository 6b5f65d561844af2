#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model (faster-whisper layout) to a whisper.cpp GGML file.

Usage:
    ct2_to_ggml.py MODEL_DIR OUT.bin [--quantize q8_0|q5_0]
    ct2_to_ggml.py --quantize q8_0|q5_0 --from-ggml IN.bin OUT.bin

MODEL_DIR holds `model.bin` (or `model.bin.part1`, `model.bin.part2`, ... which are
concatenated in order) and `vocabulary.txt`.

The output matches whisper.cpp's own `convert-pt-to-ggml.py`: magic, 11 int32
hyper-parameters, the slaney mel filterbank, the regular vocabulary as raw bytes, then
every tensor under its OpenAI name. 2-D weights are f16 (or q8_0/q5_0 blocks that are
bit-exact to ggml's reference quantizers); biases, norms, conv biases and positional
embeddings stay f32. Only Python 3 and numpy are needed. Conversion is deterministic:
the same input always gives byte-identical output.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
from typing import BinaryIO, Dict, Iterator, List, Tuple

import numpy as np

GGML_MAGIC = 0x67676D6C
N_AUDIO_CTX = 1500
N_TEXT_CTX = 448
# ggml's quantization version (GGML_QNT_VERSION) and the factor it is stored with.
QNT_VERSION = 2
QNT_FACTOR = 1000
# ggml type ids and whole-file ftypes
GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q5_0, GGML_TYPE_Q8_0 = 0, 1, 6, 8
FTYPE_F16, FTYPE_Q8_0, FTYPE_Q5_0 = 1, 7, 8
QUANT = {"q8_0": (GGML_TYPE_Q8_0, FTYPE_Q8_0), "q5_0": (GGML_TYPE_Q5_0, FTYPE_Q5_0)}
# Tensors whisper.cpp keeps in f32 (and its quantizer skips).
KEEP_F32 = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
CT2_BF16 = 5


def warn(msg: str) -> None:
    print(f"ct2_to_ggml: warning: {msg}", file=sys.stderr)


class ConvertError(Exception):
    pass


# --------------------------------------------------------------------------- reading CT2


class _Reader:
    def __init__(self, data: memoryview):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ConvertError(f"model.bin is truncated at byte {self.pos} (wanted {n} more bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        n = self.u16()
        return bytes(self.take(n)).rstrip(b"\0").decode("utf-8")


def read_ct2(data: bytes) -> Tuple[str, Dict[str, np.ndarray]]:
    """Parse a CTranslate2 model.bin; returns (spec name, variables with aliases resolved)."""
    r = _Reader(memoryview(data))
    version = r.u32()
    if version < 4 or version > 6:
        raise ConvertError(f"unsupported CTranslate2 binary version {version} (expected 4..6)")
    spec = r.string()
    r.u32()  # spec revision
    variables: Dict[str, np.ndarray] = {}
    for _ in range(r.u32()):
        name = r.string()
        rank = r.u8()
        dims = [r.u32() for _ in range(rank)]
        dtype_id = r.u8()
        nbytes = r.u32()
        raw = r.take(nbytes)
        if dtype_id == CT2_BF16:
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif dtype_id in CT2_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(CT2_DTYPES[dtype_id]).newbyteorder("<"))
        else:
            raise ConvertError(f"variable {name}: unknown dtype code {dtype_id}")
        count = int(np.prod(dims)) if dims else 1
        if arr.size != count:
            raise ConvertError(f"variable {name}: {arr.size} values for shape {dims}")
        variables[name] = arr.reshape(dims) if dims else arr.reshape(())
    for _ in range(r.u32()):
        alias, target = r.string(), r.string()
        if target in variables:
            variables[alias] = variables[target]
    return spec, variables


def weight(v: Dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """A float32 weight, de-quantizing int8/int16 weights with their per-row scale."""
    w = v[prefix + "/weight"]
    if w.dtype in (np.int8, np.int16):
        scale = v[prefix + "/weight_scale"].astype(np.float32)
        return w.astype(np.float32) / scale.reshape(-1, *([1] * (w.ndim - 1)))
    return w.astype(np.float32)


# --------------------------------------------------------------------------- mapping


def _split_rows(a: np.ndarray, parts: int) -> List[np.ndarray]:
    if a.shape[0] % parts:
        raise ConvertError(f"cannot split {a.shape[0]} rows into {parts} parts")
    return np.split(a, parts, axis=0)


def _linear(v, src: str, dst: str, out: List[Tuple[str, np.ndarray]], bias: bool = True) -> None:
    out.append((dst + ".weight", weight(v, src)))
    if bias:
        out.append((dst + ".bias", v[src + "/bias"].astype(np.float32)))


def _fused(v, src: str, dsts: List[str], out, no_bias: str) -> None:
    ws = _split_rows(weight(v, src), len(dsts))
    bs = _split_rows(v[src + "/bias"].astype(np.float32), len(dsts))
    for dst, w, b in zip(dsts, ws, bs):
        out.append((dst + ".weight", w))
        if dst.endswith(no_bias):
            if np.any(b != 0):
                warn(f"{src}: the key bias is not zero (max |b| = {np.abs(b).max()}); dropping it")
        else:
            out.append((dst + ".bias", b))


def _norm(v, src: str, dst: str, out) -> None:
    out.append((dst + ".weight", v[src + "/gamma"].astype(np.float32)))
    out.append((dst + ".bias", v[src + "/beta"].astype(np.float32)))


def _layer_count(v, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def map_tensors(v: Dict[str, np.ndarray]) -> Tuple[Dict[str, int], List[Tuple[str, np.ndarray]]]:
    """Rename CT2 variables to OpenAI/whisper.cpp names; returns (hparams, tensors in order)."""
    out: List[Tuple[str, np.ndarray]] = []
    conv1 = weight(v, "encoder/conv1")
    n_audio_state, n_mels = conv1.shape[0], conv1.shape[1]
    emb = weight(v, "decoder/embeddings")
    n_vocab, n_text_state = emb.shape
    n_audio_layer = _layer_count(v, "encoder")
    n_text_layer = _layer_count(v, "decoder")

    def heads(name: str, state: int) -> int:
        return int(v[name].item()) if name in v else state // 64

    hp = {
        "n_vocab": n_vocab,
        "n_audio_ctx": v["encoder/position_encodings/encodings"].shape[0],
        "n_audio_state": n_audio_state,
        "n_audio_head": heads("encoder/num_heads", n_audio_state),
        "n_audio_layer": n_audio_layer,
        "n_text_ctx": v["decoder/position_encodings/encodings"].shape[0],
        "n_text_state": n_text_state,
        "n_text_head": heads("decoder/num_heads", n_text_state),
        "n_text_layer": n_text_layer,
        "n_mels": n_mels,
    }

    out.append(("encoder.positional_embedding", v["encoder/position_encodings/encodings"].astype(np.float32)))
    out.append(("encoder.conv1.weight", conv1))
    out.append(("encoder.conv1.bias", v["encoder/conv1/bias"].astype(np.float32)))
    _linear(v, "encoder/conv2", "encoder.conv2", out)
    for i in range(n_audio_layer):
        s, d = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        _fused(v, s + "/self_attention/linear_0", [d + ".attn.query", d + ".attn.key", d + ".attn.value"], out, ".key")
        _linear(v, s + "/self_attention/linear_1", d + ".attn.out", out)
        _norm(v, s + "/self_attention/layer_norm", d + ".attn_ln", out)
        _linear(v, s + "/ffn/linear_0", d + ".mlp.0", out)
        _linear(v, s + "/ffn/linear_1", d + ".mlp.2", out)
        _norm(v, s + "/ffn/layer_norm", d + ".mlp_ln", out)
    _norm(v, "encoder/layer_norm", "encoder.ln_post", out)

    out.append(("decoder.positional_embedding", v["decoder/position_encodings/encodings"].astype(np.float32)))
    out.append(("decoder.token_embedding.weight", emb))
    for i in range(n_text_layer):
        s, d = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        _fused(v, s + "/self_attention/linear_0", [d + ".attn.query", d + ".attn.key", d + ".attn.value"], out, ".key")
        _linear(v, s + "/self_attention/linear_1", d + ".attn.out", out)
        _norm(v, s + "/self_attention/layer_norm", d + ".attn_ln", out)
        _linear(v, s + "/attention/linear_0", d + ".cross_attn.query", out)
        _fused(v, s + "/attention/linear_1", [d + ".cross_attn.key", d + ".cross_attn.value"], out, ".key")
        _linear(v, s + "/attention/linear_2", d + ".cross_attn.out", out)
        _norm(v, s + "/attention/layer_norm", d + ".cross_attn_ln", out)
        _linear(v, s + "/ffn/linear_0", d + ".mlp.0", out)
        _linear(v, s + "/ffn/linear_1", d + ".mlp.2", out)
        _norm(v, s + "/ffn/layer_norm", d + ".mlp_ln", out)
    _norm(v, "decoder/layer_norm", "decoder.ln", out)
    return hp, out


# --------------------------------------------------------------------------- mel, vocab


def mel_filters(sr: int = 16000, n_fft: int = 400, n_mels: int = 80) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults: Slaney mel scale and norm."""

    def hz_to_mel(f):
        f = np.asanyarray(f, dtype=np.float64)
        f_sp = 200.0 / 3
        mels = f / f_sp
        min_log_hz = 1000.0
        min_log_mel = min_log_hz / f_sp
        logstep = np.log(6.4) / 27.0
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)

    def mel_to_hz(m):
        m = np.asanyarray(m, dtype=np.float64)
        f_sp = 200.0 / 3
        freqs = f_sp * m
        min_log_hz = 1000.0
        min_log_mel = min_log_hz / f_sp
        logstep = np.log(6.4) / 27.0
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)

    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


def _byte_decoder() -> Dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def read_vocabulary(path: str) -> List[bytes]:
    """Regular tokens (those before <|endoftext|>) as raw bytes, in id order."""
    dec = _byte_decoder()
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    tokens: List[bytes] = []
    for line in lines:
        if line == "<|endoftext|>":
            return tokens
        try:
            tokens.append(bytes(dec[c] for c in line))
        except KeyError as e:
            raise ConvertError(f"{path}: token {len(tokens)} has a character outside GPT-2's byte map: {e}")
    raise ConvertError(f"{path}: no <|endoftext|> token found")


# --------------------------------------------------------------------------- quantization


def _round_away(x: np.ndarray) -> np.ndarray:
    """C roundf(): halves away from zero (numpy rounds halves to even)."""
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def quantize_q8_0(x: np.ndarray) -> bytes:
    """ggml's quantize_row_q8_0_ref, bit for bit: blocks of 32 as (f16 d, 32 x int8)."""
    b = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = _round_away((b * idv[:, None]).astype(np.float32)).astype(np.int8)
    out = np.zeros(b.shape[0], dtype=[("d", "<f2"), ("qs", "i1", 32)])
    out["d"] = d.astype(np.float16)
    out["qs"] = q
    return out.tobytes()


def quantize_q5_0(x: np.ndarray) -> bytes:
    """ggml's quantize_row_q5_0_ref, bit for bit: blocks of 32 as (f16 d, u32 qh, 16 bytes)."""
    b = x.astype(np.float32).reshape(-1, 32)
    idx = np.abs(b).argmax(axis=1)  # first index of the largest magnitude, as the C loop keeps
    mx = b[np.arange(b.shape[0]), idx]
    d = (mx / np.float32(-16)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    xi = np.trunc((b * idv[:, None]).astype(np.float32) + np.float32(16.5)).astype(np.int32)
    xi = np.minimum(31, xi.astype(np.int8).astype(np.int32)).astype(np.uint32)
    lo, hi = xi[:, :16], xi[:, 16:]
    qs = ((lo & 0x0F) | ((hi & 0x0F) << 4)).astype(np.uint8)
    shifts = np.arange(16, dtype=np.uint32)
    qh = (((lo & 0x10) >> 4) << shifts).sum(axis=1, dtype=np.uint64) | (
        ((hi & 0x10) >> 4) << (shifts + 16)
    ).sum(axis=1, dtype=np.uint64)
    out = np.zeros(b.shape[0], dtype=[("d", "<f2"), ("qh", "<u4"), ("qs", "u1", 16)])
    out["d"] = d.astype(np.float16)
    out["qh"] = qh.astype(np.uint32)
    out["qs"] = qs
    return out.tobytes()


QUANTIZERS = {"q8_0": quantize_q8_0, "q5_0": quantize_q5_0}


# --------------------------------------------------------------------------- writing


def _tensor_payload(name: str, data: np.ndarray, quant: str | None) -> Tuple[np.ndarray, int, bytes]:
    """(array with its final shape, ggml type, bytes) for one tensor."""
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        data = data.reshape(data.shape[0], 1)
    if data.ndim < 2 or name in KEEP_F32:
        return data, GGML_TYPE_F32, data.astype("<f4").tobytes()
    if quant and data.ndim == 2 and data.shape[1] % 32 == 0:
        return data, QUANT[quant][0], QUANTIZERS[quant](data)
    return data, GGML_TYPE_F16, data.astype("<f2").tobytes()


def _write_tensor(f: BinaryIO, name: str, shape: Tuple[int, ...], ttype: int, payload: bytes) -> None:
    key = name.encode("utf-8")
    f.write(struct.pack("<iii", len(shape), len(key), ttype))
    for dim in reversed(shape):
        f.write(struct.pack("<i", dim))
    f.write(key)
    f.write(payload)


def write_ggml(path: str, hp: Dict[str, int], filters: np.ndarray, tokens: List[bytes],
               tensors: Iterator[Tuple[str, np.ndarray]], quant: str | None) -> None:
    """Write atomically: a temp file beside `path`, fsync, rename, fsync the folder."""
    ftype = FTYPE_F16 if quant is None else QNT_VERSION * QNT_FACTOR + QUANT[quant][1]
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<I", GGML_MAGIC))
            for key in ("n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                        "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels"):
                f.write(struct.pack("<i", hp[key]))
            f.write(struct.pack("<i", ftype))
            f.write(struct.pack("<ii", *filters.shape))
            f.write(filters.astype("<f4").tobytes())
            f.write(struct.pack("<i", len(tokens)))
            for tok in tokens:
                f.write(struct.pack("<i", len(tok)))
                f.write(tok)
            for name, data in tensors:
                arr, ttype, payload = _tensor_payload(name, data, quant)
                _write_tensor(f, name, arr.shape, ttype, payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- GGML -> quantized GGML


def read_ggml(path: str):
    """Read an f16 GGML whisper file back: (hparams, filters, tokens, [(name, array)])."""
    with open(path, "rb") as f:
        data = f.read()
    r = _Reader(memoryview(data))
    if r.u32() != GGML_MAGIC:
        raise ConvertError(f"{path}: not a GGML file (bad magic)")
    keys = ("n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
            "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype")
    hp = {k: struct.unpack("<i", r.take(4))[0] for k in keys}
    if hp["ftype"] != FTYPE_F16:
        raise ConvertError(f"{path}: quantize from an f16 file (this one has ftype {hp['ftype']})")
    rows, cols = struct.unpack("<ii", r.take(8))
    filters = np.frombuffer(r.take(rows * cols * 4), dtype="<f4").reshape(rows, cols)
    tokens = []
    for _ in range(struct.unpack("<i", r.take(4))[0]):
        n = struct.unpack("<i", r.take(4))[0]
        tokens.append(bytes(r.take(n)))
    tensors = []
    while r.pos < len(data):
        n_dims, name_len, ttype = struct.unpack("<iii", r.take(12))
        dims = struct.unpack(f"<{n_dims}i", r.take(4 * n_dims))
        name = bytes(r.take(name_len)).decode("utf-8")
        shape = tuple(reversed(dims))
        dt = {GGML_TYPE_F32: "<f4", GGML_TYPE_F16: "<f2"}.get(ttype)
        if dt is None:
            raise ConvertError(f"{path}: tensor {name} has type {ttype}, expected f16/f32")
        count = int(np.prod(shape))
        arr = np.frombuffer(r.take(count * np.dtype(dt).itemsize), dtype=dt).reshape(shape)
        if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
            arr = arr.reshape(-1)
        tensors.append((name, arr))
    return hp, filters, tokens, tensors


# --------------------------------------------------------------------------- main


def load_model_bin(model_dir: str) -> bytes:
    whole = os.path.join(model_dir, "model.bin")
    if os.path.exists(whole):
        with open(whole, "rb") as f:
            return f.read()
    parts = []
    i = 1
    while os.path.exists(os.path.join(model_dir, f"model.bin.part{i}")):
        with open(os.path.join(model_dir, f"model.bin.part{i}"), "rb") as f:
            parts.append(f.read())
        i += 1
    if not parts:
        raise ConvertError(f"{model_dir}: no model.bin (or model.bin.part1...) found")
    return b"".join(parts)


def convert(model_dir: str, out: str, quant: str | None = None) -> Dict[str, int]:
    spec, variables = read_ct2(load_model_bin(model_dir))
    if spec != "WhisperSpec":
        raise ConvertError(f"{model_dir}: spec is {spec!r}, not a Whisper model")
    hp, tensors = map_tensors(variables)
    tokens = read_vocabulary(os.path.join(model_dir, "vocabulary.txt"))
    write_ggml(out, hp, mel_filters(n_mels=hp["n_mels"]), tokens, iter(tensors), quant)
    return hp


def requantize(src: str, out: str, quant: str) -> None:
    hp, filters, tokens, tensors = read_ggml(src)
    write_ggml(out, hp, filters, tokens, iter(tensors), quant)


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", help="CTranslate2 model folder, or with --from-ggml an f16 GGML file")
    p.add_argument("out", help="GGML file to write")
    p.add_argument("--quantize", choices=sorted(QUANTIZERS), help="write q8_0/q5_0 2-D weights")
    p.add_argument("--from-ggml", action="store_true", help="quantize an existing f16 GGML file")
    a = p.parse_args(argv)
    try:
        if a.from_ggml:
            if not a.quantize:
                p.error("--from-ggml needs --quantize")
            requantize(a.src, a.out, a.quantize)
        else:
            hp = convert(a.src, a.out, a.quantize)
            kind = "multilingual" if hp["n_vocab"] >= 51865 else "English-only"
            print(f"ct2_to_ggml: {a.out}: {kind}, {hp['n_audio_layer']}+{hp['n_text_layer']} layers, "
                  f"state {hp['n_audio_state']}, vocab {hp['n_vocab']}", file=sys.stderr)
    except (ConvertError, OSError, KeyError) as e:
        print(f"ct2_to_ggml: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
