//! Integration tests of the window crate with the real ingest pipeline in front of it.

mod alloc;
mod memory;
pub mod requests;
