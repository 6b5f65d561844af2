//! The integration tests, in one binary so that the suite links once: the real binary on
//! real audio with real models, a real server on a random port, a real browser for the page.

mod common;

mod cli;
mod clients;
mod cluster;
mod contract;
mod decode;
mod fetch;
mod hardening;
mod inbox;
mod long;
mod s3;
mod serve;
mod telegram;
mod transcribe;
