//! The interfaces of the target namespace with their indexes and addresses, for the lookup
//! model: the ingress ifindex of a named interface, the interface owning a destination address
//! (what the kernel's lookup sees for a client on this host), the addresses a client can dial.
use std::path::Path;

use crate::{
    diagnose::Interface,
    netns::{addresses, enter},
};

/// Every interface of the namespace at `path`, with its addresses (read from inside it: indexes
/// and names are per namespace). Unreadable: none, said on stderr; the diagnosis then judges
/// with what the attempt itself showed.
pub fn of_netns(path: &Path, ns_name: &str) -> Vec<Interface> {
    let read = enter::in_netns(path, || -> std::io::Result<Vec<Interface>> {
        let addrs = addresses::iface_addrs()?;
        Ok(addresses::iface_names()
            .into_iter()
            .filter_map(|name| {
                let ifindex = addresses::ifindex(&name)?;
                let addrs = addrs.iter().filter(|(n, _)| *n == name).map(|(_, a)| *a).collect();
                Some(Interface { ifindex, name, addrs })
            })
            .collect())
    });
    match read {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("reach: cannot list the addresses of netns {ns_name}: {e}");
            Vec::new()
        }
        Err(e) => {
            eprintln!("reach: cannot enter netns {ns_name}: {e}");
            Vec::new()
        }
    }
}
