//! The client: a real TCP connect from the client namespace, and what it saw.
use std::{
    fmt, io,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crate::lab::NetNsFd;

/// How long the client tries: long enough for reach to call a silent drop `unanswered` (2 s, so
/// the first SYN retransmission at 1 s is seen too), short enough to keep the lab quick.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What `connect()` returned, in the words of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSaw {
    Connected,
    /// ECONNREFUSED: a RST came back (nothing listens for this SYN, or a tcp-reset rule).
    Refused,
    /// No answer at all: a silent drop, or a full accept queue.
    Timeout,
    /// EHOSTUNREACH: an ICMP reject, which is what firewalld's IPv4 reject looks like.
    Unreachable,
    /// EACCES: an ICMPv6 administratively-prohibited reject.
    Prohibited,
    /// Anything else, as the OS said it.
    Other(String),
}

impl ClientSaw {
    fn from_error(e: &io::Error) -> Self {
        if e.kind() == io::ErrorKind::TimedOut {
            return Self::Timeout;
        }
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Self::Refused,
            Some(libc::EHOSTUNREACH) => Self::Unreachable,
            Some(libc::EACCES | libc::EPERM) => Self::Prohibited,
            _ => Self::Other(e.to_string()),
        }
    }
}

impl fmt::Display for ClientSaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected => f.write_str("connected"),
            Self::Refused => f.write_str("refused"),
            Self::Timeout => f.write_str("timeout"),
            Self::Unreachable => f.write_str("unreachable (EHOSTUNREACH)"),
            Self::Prohibited => f.write_str("prohibited (EACCES)"),
            Self::Other(e) => write!(f, "error: {e}"),
        }
    }
}

/// Connects from `ns` to `to` within `timeout`; the stream too when connected (dropping it
/// closes the connection).
pub fn connect(
    ns: &NetNsFd,
    to: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<(ClientSaw, Option<TcpStream>)> {
    // The socket is created inside the client namespace and stays there, whichever thread
    // later holds it.
    let result = ns.run_in(move || TcpStream::connect_timeout(&to, timeout))?;
    Ok(match result {
        Ok(stream) => (ClientSaw::Connected, Some(stream)),
        Err(e) => (ClientSaw::from_error(&e), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_what_the_client_saw() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(ClientSaw::from_error(&os(libc::ECONNREFUSED)), ClientSaw::Refused);
        assert_eq!(ClientSaw::from_error(&os(libc::EHOSTUNREACH)), ClientSaw::Unreachable);
        assert_eq!(ClientSaw::from_error(&os(libc::EACCES)), ClientSaw::Prohibited);
        assert_eq!(ClientSaw::from_error(&os(libc::ETIMEDOUT)), ClientSaw::Timeout);
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
        assert_eq!(ClientSaw::from_error(&timed_out), ClientSaw::Timeout);
        assert_eq!(ClientSaw::Unreachable.to_string(), "unreachable (EHOSTUNREACH)");
    }
}
