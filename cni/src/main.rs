//! `meshfwd-cni`: read the CNI environment and stdin, run the verb, print
//! the result or the error, exit.

use std::io::{Read as _, Write as _};

fn main() {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        let err =
            cni::spec::Error::new(cni::spec::Code::Io, "reading the configuration from stdin")
                .details(e);
        println!("{}", err.to_json(cni::spec::version::LATEST));
        std::process::exit(1);
    }
    let outcome = cni::run(|k| std::env::var(k).ok(), &stdin);
    let mut out = std::io::stdout().lock();
    if !outcome.stdout.is_empty() {
        let _ = writeln!(out, "{}", outcome.stdout);
    }
    let _ = out.flush();
    std::process::exit(outcome.exit_code);
}
