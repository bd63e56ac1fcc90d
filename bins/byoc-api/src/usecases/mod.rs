//! What the routes and the settings page do with credentials beyond a single store call: the steps that
//! involve a provider.

pub mod verification;
