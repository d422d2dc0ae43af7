//! The command line's text, as people see it: the help of every person-facing subcommand, a
//! stored report rendered, and the refusals of bad input, each with its exit code. The cases are
//! in tests/cmd/*.md (trycmd); `TRYCMD=overwrite cargo test --test it cli_text` rewrites them after
//! a deliberate change, to be reviewed like any other.

#[test]
fn the_command_lines_text_is_what_the_cases_say() {
    trycmd::TestCases::new()
        .register_bin("chaoslab", std::path::PathBuf::from(env!("CARGO_BIN_EXE_chaoslab")))
        // No cluster is ever reached: every case fails or finishes before connecting.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("NO_COLOR", "1")
        // Errors are read as a person reads them, without a backtrace.
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .case(crate::support::repo_path("tests/cmd/*.md"));
}
