//! What stands for the TLS module when echo-bench is built without the
//! feature `tls`: no flag asks for TLS, and no TLS configuration exists.

use std::fmt;
use std::io;

use clap::Args;

/// No TLS flags.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {}

impl TlsArgs {
    /// No TLS, ever.
    ///
    /// # Errors
    ///
    /// Never fails; the signature is the TLS module's.
    pub fn client(&self, _host: &str) -> io::Result<Option<Tls>> {
        Ok(None)
    }
}

/// A TLS configuration, of which there is none: a type without values.
#[derive(Debug, Clone)]
pub enum Tls {}

impl fmt::Display for Tls {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}
