//! One module per subcommand.

pub mod policy;
