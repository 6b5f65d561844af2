#!/usr/bin/env python3
"""Silero VAD (the `silero-vad` wheel's silero_vad_16k.safetensors) to whisper.cpp's VAD GGML.

    python3 scripts/silero_to_ggml.py silero_vad_16k.safetensors VERSION OUT.bin

Reads the safetensors file with numpy alone (a JSON header, then raw little-endian arrays),
renames the tensors to the names whisper.cpp's loader looks up, and writes the layout that
`whisper_vad_init_with_params` reads: the GGML magic, the model type, the version, the
window (512 samples) and context (64), the encoder/LSTM/final-conv shapes, then each tensor
as (n_dims, name length, type, dims innermost first, name, data). Convolution weights and
the STFT basis are stored as f16, everything else as f32, as the loader's tensors are typed.
"""
import json
import struct
import sys

import numpy as np

# safetensors name -> whisper.cpp name, in the order written.
NAMES = [
    ("conv1.weight", "_model.encoder.0.reparam_conv.weight"),
    ("conv1.bias", "_model.encoder.0.reparam_conv.bias"),
    ("conv2.weight", "_model.encoder.1.reparam_conv.weight"),
    ("conv2.bias", "_model.encoder.1.reparam_conv.bias"),
    ("conv3.weight", "_model.encoder.2.reparam_conv.weight"),
    ("conv3.bias", "_model.encoder.2.reparam_conv.bias"),
    ("conv4.weight", "_model.encoder.3.reparam_conv.weight"),
    ("conv4.bias", "_model.encoder.3.reparam_conv.bias"),
    ("lstm_cell.weight_ih", "_model.decoder.rnn.weight_ih"),
    ("lstm_cell.weight_hh", "_model.decoder.rnn.weight_hh"),
    ("lstm_cell.bias_ih", "_model.decoder.rnn.bias_ih"),
    ("lstm_cell.bias_hh", "_model.decoder.rnn.bias_hh"),
    ("final_conv.weight", "_model.decoder.decoder.2.weight"),
    ("final_conv.bias", "_model.decoder.decoder.2.bias"),
    ("stft_conv.weight", "_model.stft.forward_basis_buffer"),
]
F16_TENSORS = {
    "_model.stft.forward_basis_buffer",
    "_model.decoder.decoder.2.weight",
} | {f"_model.encoder.{i}.reparam_conv.weight" for i in range(4)}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(blob[base + a : base + b], dtype="<f4").reshape(info["shape"])
    return out


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    src, version, dst = sys.argv[1:]
    t = read_safetensors(src)
    missing = [s for s, _ in NAMES if s not in t]
    if missing:
        raise SystemExit(f"{src}: missing tensors {missing}")
    major, minor, patch = (int(x) for x in version.split("."))
    enc_in = [t[f"conv{i}.weight"].shape[1] for i in range(1, 5)]
    enc_out = [t[f"conv{i}.weight"].shape[0] for i in range(1, 5)]
    kernel = [t[f"conv{i}.weight"].shape[2] for i in range(1, 5)]
    hidden = t["lstm_cell.weight_hh"].shape[1]
    lstm_in = t["lstm_cell.weight_ih"].shape[1]
    final_in = t["final_conv.weight"].shape[1]
    with open(dst, "wb") as f:
        i32 = lambda *v: f.write(struct.pack(f"<{len(v)}i", *v))
        i32(0x67676D6C)
        kind = b"silero-16k"
        i32(len(kind))
        f.write(kind)
        i32(major, minor, patch)
        i32(512, 64)  # window (samples per probability) and context samples
        i32(len(enc_in))
        for i in range(len(enc_in)):
            i32(enc_in[i], enc_out[i], kernel[i])
        i32(lstm_in, hidden, final_in, 1)
        for src_name, name in NAMES:
            a = t[src_name]
            if name == "_model.stft.forward_basis_buffer":
                shape = list(a.shape)  # [258, 1, 256]: keep all three dims
            else:
                a = a.squeeze()
                shape = list(a.shape)
            f16 = name in F16_TENSORS
            data = a.astype("<f2" if f16 else "<f4")
            enc = name.encode()
            i32(len(shape), len(enc), 1 if f16 else 0)
            i32(*reversed(shape))
            f.write(enc)
            f.write(np.ascontiguousarray(data).tobytes())


if __name__ == "__main__":
    main()
