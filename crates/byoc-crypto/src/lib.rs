//! Versioned envelope encryption for byoc credentials (no I/O).
