//! Logging set-up: `tracing` to stderr, pretty or JSON, with noisy dependencies held at
//! `warn` (symphonia logs every stream it opens at INFO).

use tracing_subscriber::EnvFilter;

/// Log output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Install the global subscriber. `RUST_LOG` overrides `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Decoder crates log every stream they open and every bad packet; earshot reports
        // what matters itself (warnings and typed errors), so they stay quiet.
        let quiet = [
            "symphonia_core",
            "symphonia_format_ogg",
            "symphonia_format_isomp4",
            "symphonia_format_mkv",
            "symphonia_format_riff",
            "symphonia_bundle_mp3",
            "symphonia_bundle_flac",
            "symphonia_codec_aac",
            "symphonia_codec_vorbis",
            "symphonia_codec_pcm",
            "symphonia_codec_adpcm",
            "whisper_rs",
        ];
        let mut directives = default_level.to_string();
        for c in quiet {
            directives.push_str(&format!(",{c}=off"));
        }
        EnvFilter::new(directives)
    });
    // The HTTP client logs request paths at TRACE, and a Telegram Bot API path holds the bot
    // token: it never logs below INFO, whatever RUST_LOG says.
    let filter = ["ureq=info", "ureq_proto=info"]
        .into_iter()
        .fold(filter, |f, d| {
            f.add_directive(d.parse().expect("a valid directive"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, not escape codes in a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
