//! `meshfwd`: the kubermesh node agent and its operator CLI.

fn main() -> std::process::ExitCode {
    meshfwd::cli::main()
}
