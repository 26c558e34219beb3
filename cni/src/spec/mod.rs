//! The CNI specification (1.1.0, accepting 0.4.0 and 1.0.0) as types:
//! what the runtime hands the plugin (environment, network configuration)
//! and what the plugin hands back (a result or an error).
//!
//! Nothing here touches the system; the verbs in [`crate::verbs`] do.

pub mod env;
pub mod error;
pub mod netconf;
pub mod result;
pub mod version;

pub use env::{CniArgs, Command, Env};
pub use error::{Code, Context, Error, Result};
pub use netconf::{Attachment, IpFamily, NetConf};
pub use result::CniResult;
pub use version::Version;
