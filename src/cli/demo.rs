//! `chaoslab demo`: flags turned into the lab app's configuration.

use std::process::ExitCode;

/// Flags of `chaoslab demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {}

pub fn main(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("chaoslab demo is being built (issue 6)")
}
