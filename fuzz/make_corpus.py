#!/usr/bin/env python3
"""Seed corpus for the decode fuzz target: every fixture, plus the kinds of damage the
adversarial pass used (issue #13): truncation at 50/90/99%, flipped and zeroed bytes, and
WAV headers with their fields pushed to extremes (sample rate, channels, bits, sizes).

    python3 fuzz/make_corpus.py fuzz/corpus/decode
"""
import pathlib
import random
import struct
import sys

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/decode")
out.mkdir(parents=True, exist_ok=True)
root = pathlib.Path(__file__).resolve().parent.parent
rng = random.Random(13)
n = 0


def put(name, data):
    global n
    (out / name).write_bytes(data)
    n += 1


fixtures = sorted(p for p in (root / "tests/fixtures").rglob("*") if p.is_file() and p.stat().st_size < 400_000)
for p in fixtures:
    data = p.read_bytes()
    base = p.name
    put(base, data)
    if not data:
        continue
    for frac in (0.5, 0.9, 0.99):
        put(f"{base}.cut{int(frac * 100)}", data[: int(len(data) * frac)])
    for k in range(3):
        b = bytearray(data)
        for _ in range(1 + len(b) // 2000):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        put(f"{base}.flip{k}", bytes(b))
    b = bytearray(data)
    start = rng.randrange(len(b))
    b[start : start + 64] = bytes(min(64, len(b) - start))
    put(f"{base}.zero", bytes(b))
    if len(data) > 64:
        b = bytearray(data)
        del b[len(b) // 3 : len(b) // 3 + 32]
        put(f"{base}.hole", bytes(b))


def wav(rate, channels, bits, data_len, fmt=1, riff_len=None, declared=None):
    block = max(1, channels * bits // 8) & 0xFFFF
    h = b"RIFF" + struct.pack("<I", (riff_len if riff_len is not None else 36 + data_len) & 0xFFFFFFFF)
    h += b"WAVEfmt " + struct.pack("<IHHIIHH", 16, fmt, channels & 0xFFFF, rate & 0xFFFFFFFF, (rate * block) & 0xFFFFFFFF, block, bits & 0xFFFF)
    h += b"data" + struct.pack("<I", (declared if declared is not None else data_len) & 0xFFFFFFFF)
    return h + bytes(rng.randrange(256) for _ in range(data_len))


for rate in (0, 1, 999, 8000, 383999, 384001, 10_000_000, 0xFFFFFFFF):
    for ch in (0, 1, 2, 33, 1000, 0xFFFF):
        put(f"wav_r{rate}_c{ch}", wav(rate, ch, 16, 4000))
for bits in (0, 1, 7, 24, 32, 64, 0xFFFF):
    put(f"wav_b{bits}", wav(16000, 1, bits, 4000))
for fmt in (3, 6, 7, 0xFFFE, 0x1234):
    put(f"wav_f{fmt}", wav(16000, 1, 16, 4000, fmt=fmt))
put("wav_declared_huge", wav(16000, 1, 16, 4000, declared=0xFFFFFFFF))
put("wav_riff_tiny", wav(16000, 1, 16, 4000, riff_len=4))

# MP4: every 32-bit box size in the first boxes set to extremes.
for p in fixtures:
    if p.suffix in (".m4a", ".mp4"):
        data = p.read_bytes()
        for off in range(0, min(len(data) - 4, 400), 4):
            if data[off + 4 : off + 8].isalpha():
                for v in (0, 1, 7, 0xFFFFFFFF):
                    b = bytearray(data)
                    b[off : off + 4] = struct.pack(">I", v)
                    put(f"{p.name}.box{off}_{v}", bytes(b))
    if p.suffix in (".webm", ".mkv"):
        data = p.read_bytes()
        for off in range(4, min(len(data), 300), 7):
            b = bytearray(data)
            b[off] = 0x01  # an EBML size byte claiming a 7-byte length
            put(f"{p.name}.ebml{off}", bytes(b))
print(f"{n} seeds in {out}")
