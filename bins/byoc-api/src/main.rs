//! `byoc-api`: the byoc HTTP service.

fn main() {}
