//! `byoc`: the byoc operator CLI.

fn main() {}
