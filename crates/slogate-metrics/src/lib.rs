//! The OTLP metric store (work in progress).
