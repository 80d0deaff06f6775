//! One module per `reach` subcommand.
pub mod agent;
pub mod doctor;
pub mod lab;
pub mod lab_server;
pub mod listeners;
pub mod predict;
pub mod watch;
pub mod why;
