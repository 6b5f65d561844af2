#!/usr/bin/env bash
# Make the audio fixtures under tests/fixtures/ the way the messaging apps make them.
#
#   scripts/make-fixtures.sh [EVAL_DIR]      (default: ../shared/eval beside the checkout)
#
# Sources are real recordings from the shared evaluation set (see tests/fixtures/SOURCES.md
# for each clip's origin and license); ffmpeg does the encoding. Broken inputs are made from
# the good ones with fixed seeds, so running this again gives the same files (up to encoder
# versions). Installs ffmpeg from Debian when it is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
eval_dir="${1:-$root/../shared/eval}"
clips="$eval_dir/clips"
out="$root/tests/fixtures"
[ -d "$clips" ] || { echo "make-fixtures: no clips in $clips" >&2; exit 1; }
source "$here/lib/apt.sh"
command -v ffmpeg >/dev/null || apt_install make-fixtures ffmpeg
mkdir -p "$out" "$out/broken"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
meta=(-map_metadata -1 -fflags +bitexact -flags:a +bitexact)

jfk="$clips/wrs_jfk.wav"            # English, 11 s, public domain
ru="$clips/festru_ru_0039.wav"      # Russian, 5.4 s, festvox-ru (BSD-like)
fwd="$clips/ps_goforward.wav"       # English, 2.8 s, pocketsphinx test data (BSD-style)
cards="$clips/ps_cards_001.wav"     # English, 1.1 s, pocketsphinx test data (BSD-style)

# Telegram voice: Ogg Opus, mono, 48 kHz, ~32 kb/s, .oga
ff -i "$jfk" "${meta[@]}" -ac 1 -ar 48000 -c:a libopus -b:a 32k -application voip "$out/telegram_jfk.oga"
ff -i "$ru" "${meta[@]}" -ac 1 -ar 48000 -c:a libopus -b:a 32k -application voip "$out/telegram_ru.oga"
# WhatsApp: Ogg Opus, mono, 16 kHz input, .opus
ff -i "$ru" "${meta[@]}" -ac 1 -ar 16000 -c:a libopus -b:a 24k -application voip "$out/whatsapp_ru.opus"
# Instagram / Messenger: AAC-LC 44.1 kHz mono in M4A and MP4 (faststart, as phones upload)
ff -i "$jfk" "${meta[@]}" -ac 1 -ar 44100 -c:a aac -b:a 32k -movflags +faststart "$out/instagram_jfk.m4a"
ff -i "$ru" "${meta[@]}" -ac 1 -ar 44100 -c:a aac -b:a 48k -movflags +faststart "$out/messenger_ru.mp4"
# Telegram round video (video_note): H.264 square video, AAC-LC 44.1 kHz mono, in MP4
ff -f lavfi -i "color=c=0x336699:s=240x240:r=10" -i "$ru" "${meta[@]}" -shortest -c:v libx264 -preset veryslow -crf 45 -pix_fmt yuv420p -c:a aac -b:a 32k -ac 1 -ar 44100 -movflags +faststart "$out/round_video_ru.mp4"
# Chrome MediaRecorder: WebM Opus, 48 kHz
ff -i "$jfk" "${meta[@]}" -ac 1 -ar 48000 -c:a libopus -b:a 32k "$out/chrome_jfk.webm"
# MP3 and FLAC
ff -i "$fwd" "${meta[@]}" -ac 1 -ar 22050 -c:a libmp3lame -b:a 32k "$out/goforward.mp3"
ff -i "$fwd" "${meta[@]}" -ac 1 -ar 16000 -sample_fmt s16 -c:a flac "$out/goforward.flac"
# WAV: 16-bit 16 kHz; 48 kHz stereo; 8 kHz mu-law
ff -i "$fwd" "${meta[@]}" -ac 1 -ar 16000 -c:a pcm_s16le "$out/goforward_16k.wav"
ff -i "$cards" "${meta[@]}" -ac 2 -ar 48000 -c:a pcm_s16le "$out/cards_48k_stereo.wav"
ff -i "$fwd" "${meta[@]}" -ac 1 -ar 8000 -c:a pcm_mulaw "$out/goforward_8k_mulaw.wav"
# Opus inside MP4 (some Android recorders)
ff -i "$ru" "${meta[@]}" -ac 1 -ar 48000 -c:a libopus -b:a 24k -f mp4 "$out/android_ru_opus.m4a"

# Edge cases that still hold audio
ff -f lavfi -i "anullsrc=r=48000:cl=mono" -t 10 "${meta[@]}" -c:a libopus -b:a 16k "$out/silence_10s.oga"
ff -f lavfi -i "anoisesrc=r=48000:a=0.003:c=pink:seed=7" -t 10 "${meta[@]}" -ac 1 -c:a libopus -b:a 16k "$out/low_noise_10s.oga"
ff -i "$ru" -t 0.2 "${meta[@]}" -ac 1 -ar 48000 -c:a libopus -b:a 32k "$out/short_0.2s.oga"

# Broken inputs (deterministic)
ff -f lavfi -i "color=c=black:s=16x16:d=1:r=5" "${meta[@]}" -c:v mpeg4 -movflags +faststart "$out/broken/video_only.mp4"
python3 - "$out" <<'EOF'
import os, random, sys
out = sys.argv[1]
b = os.path.join(out, "broken")
rnd = random.Random(20261122)
def write(name, data):
    with open(os.path.join(b, name), "wb") as f:
        f.write(data)
tg = open(os.path.join(out, "telegram_ru.oga"), "rb").read()
m4a = open(os.path.join(out, "instagram_jfk.m4a"), "rb").read()
write("empty.ogg", b"")
write("random.bin", bytes(rnd.getrandbits(8) for _ in range(4096)))
write("cdn_error.ogg", b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
      b"<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n")
write("error.json.oga", b'{"error":{"code":190,"message":"Invalid OAuth access token."}}\n')
write("telegram_ru_truncated.oga", tg[: len(tg) // 2])
# The two Ogg header pages (OpusHead, OpusTags) and then noise.
pos, pages = 0, 0
while pages < 2:
    nseg = tg[pos + 26]
    size = 27 + nseg + sum(tg[pos + 27 : pos + 27 + nseg])
    pos += size
    pages += 1
write("ogg_header_then_garbage.ogg", tg[:pos] + bytes(rnd.getrandbits(8) for _ in range(3000)))
# ftyp + moov kept, the audio data replaced by noise.
mdat = m4a.find(b"mdat") - 4
write("mp4_header_then_garbage.m4a", m4a[:mdat + 8] + bytes(rnd.getrandbits(8) for _ in range(len(m4a) - mdat - 8)))
write("instagram_jfk_cut.m4a", m4a[: len(m4a) * 6 // 10])
write("amr_voice.amr", b"#!AMR\n" + bytes([0x3C] + [rnd.getrandbits(8) for _ in range(31)]) * 20)
EOF
ls -la "$out" "$out/broken"
