//! One module per `reach` subcommand.
pub mod doctor;

