//! The user's command line: the subcommands a person runs on their own machine. This is the
//! binary's edge, where flags become engine configuration and results become exit codes.

pub mod cluster;
pub mod demo;
pub mod lab;
pub mod load;
pub mod output;
pub mod proxy;
pub mod report;
pub mod run;
