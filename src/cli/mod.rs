//! The command line: `earshot transcribe FILES...`, a batch shell over
//! [`crate::engine::Engine::transcribe`].
//!
//! It expands folders, runs `--jobs` files at once on one shared model, writes each
//! transcript in every asked-for format (to `--output-dir` or stdout), shows progress on a
//! terminal, and ends with a one-line summary. Every failure names the file and the reason;
//! the exit code is 0 when all files succeeded, 1 when any failed, 2 for usage errors.
//!
//! The flags are in `args`; the batch (inputs, outputs, progress, summary) is in `batch`.

mod args;
mod batch;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

pub use args::{DecodeArgs, TranscribeArgs};
pub use batch::human_duration;
use batch::transcribe;

#[derive(Debug, Parser)]
#[command(
    name = "earshot",
    version,
    about = "Speech-to-text for voice messages, on your own box"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "EARSHOT_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Transcribe audio files and folders (recursively).
    Transcribe(Box<TranscribeArgs>),
    /// Run the HTTP service (OpenAI-compatible API and durable jobs).
    Serve(Box<crate::config::ServeArgs>),
}

/// Make glibc hand large freed blocks back to the system. Every piece of a long note gets
/// a fresh whisper.cpp state (tens of MB of buffers), and glibc, by default, raises its
/// threshold for serving an allocation with its own mapping each time such a block is freed;
/// from then on the blocks come from the heap, which fragments and never shrinks. A 10-minute
/// note peaked at 453 MB that way and at 319 MB with the threshold fixed at 128 KiB (its
/// initial value); a 1-minute note at 350 MB. The time did not change measurably.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    return_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Transcribe(args) => {
            telemetry::init(cli.log_format, "warn");
            transcribe(*args)
        }
        Command::Serve(cfg) => {
            telemetry::init(cli.log_format, "info");
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: could not start the async runtime: {e}");
                    return 1;
                }
            };
            match rt.block_on(crate::server::run((*cfg).into())) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
    }
}
