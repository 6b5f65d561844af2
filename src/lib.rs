//! earshot: self-hosted speech-to-text for voice messages.
//!
//! Data flows one way: bytes → [`audio`] (16 kHz mono samples) → [`engine`]
//! ([`engine::Engine::transcribe`], one entry point taking an [`engine::Request`]) →
//! [`engine::Transcript`] → [`output`]. The CLI ([`cli`]) and the HTTP service ([`server`],
//! [`http`], with [`job`], [`jobs`] and [`store`]) are thin shells over that entry point.
//! `ARCHITECTURE.md` has the module map.

pub mod audio;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod http;
pub mod job;
pub mod jobs;
pub mod listener;
pub mod models;
pub mod net;
pub mod output;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telegram;
pub mod telemetry;
pub mod web;
pub mod webhooks;
