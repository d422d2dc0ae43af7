//! `chaoslab proxy`: flags turned into the proxy's configuration.

use std::process::ExitCode;

/// Flags of `chaoslab proxy`.
#[derive(Clone, Debug, clap::Args)]
pub struct ProxyArgs {}

pub fn main(_args: ProxyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("chaoslab proxy is being built (issue 5)")
}
