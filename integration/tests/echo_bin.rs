//! The `echo` binary: `--help` prints the usage; an argument error is one line and exit 2.

use wasmesh_cli_args::contract::assert_keeps_the_contract;

const BIN: &str = env!("CARGO_BIN_EXE_echo");

#[test]
fn help_and_argument_errors_keep_the_contract() {
    assert_keeps_the_contract(BIN, &["--bogus"]);
    assert_keeps_the_contract(BIN, &["--port", "eighty"]);
    assert_keeps_the_contract(BIN, &["--name"]);
}
