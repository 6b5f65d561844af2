//! Fuzz the decoder: any bytes in, audio or a typed error out, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = earshot::audio::Limits { max_bytes: 1 << 20, max_duration_s: 30.0 };
    let _ = earshot::audio::decode(data, &limits);
});
