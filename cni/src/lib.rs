//! meshfwd-cni: the kubermesh CNI plugin as a library, so tests drive the
//! same code the binary runs.
//!
//! Data flow of one invocation: [`spec`] turns environment and stdin into
//! typed input; [`verbs`] acts on the node through [`node`] (what the agent
//! published), [`ipam`] (addresses, on disk), [`wiring`] (veth, addresses
//! and routes via [`netlink`]), and the `dataplane` crate (the pinned
//! endpoint map the TC fast path reads, and through [`fastpath`] the TC
//! programs); [`run`] prints the result or the error.

pub mod fastpath;
pub mod ipam;
pub mod netlink;
pub mod node;
pub mod spec;
pub mod verbs;
pub mod wiring;

use spec::{Code, Command, Env, Error, NetConf, Version, version};

/// What the binary prints and exits with.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
    pub stdout: String,
}

/// Run one invocation: `get_env` reads the environment, `stdin` is the
/// network configuration.
pub fn run(get_env: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    // Errors are stamped with the configuration's version when it is one we
    // speak, so the runtime decodes them the way it asked.
    let stamp = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned));
    let stamp_version = stamp.as_deref().and_then(|s| Version::parse(s).ok());
    let fail = |e: Error| Outcome {
        exit_code: 1,
        stdout: e.to_json(stamp_version.map_or(version::LATEST, Version::as_str)),
    };
    let env = match Env::parse(get_env) {
        Ok(env) => env,
        Err(e) => return fail(e),
    };
    if env.command == Command::Version {
        return Outcome {
            exit_code: 0,
            stdout: version::version_json(stamp.as_deref()),
        };
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let done = |r: spec::Result<()>| match r {
        Ok(()) => Outcome {
            exit_code: 0,
            stdout: String::new(),
        },
        Err(e) => fail(e),
    };
    let needs_1_1 = |verb: &str| {
        Error::new(
            Code::IncompatibleVersion,
            format!(
                "{verb} needs cniVersion 1.1.0 (the configuration says {})",
                conf.version.as_str()
            ),
        )
    };
    match env.command {
        Command::Add => match verbs::add(&env, &conf) {
            Ok(result) => Outcome {
                exit_code: 0,
                stdout: result.to_json(conf.version),
            },
            Err(e) => fail(e),
        },
        Command::Del => done(verbs::del(&env, &conf)),
        Command::Check => done(verbs::check(&env, &conf)),
        Command::Status if !conf.version.has_status_and_gc() => fail(needs_1_1("STATUS")),
        Command::Status => done(verbs::status(&conf)),
        Command::Gc if !conf.version.has_status_and_gc() => fail(needs_1_1("GC")),
        Command::Gc => done(verbs::gc(&conf)),
        Command::Version => unreachable!("answered above"),
    }
}
