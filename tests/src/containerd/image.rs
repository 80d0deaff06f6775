//! The tests' container image, made by hand (there is no registry to pull from): an OCI image
//! layout (image-spec v1.0 `oci-layout`, `index.json`, `blobs/sha256/…`) with one layer holding
//! Debian's static busybox and its applet links, tarred for `ctr images import`.
//!
//! The config's Entrypoint is what CRI runs as a sandbox's "pause" process when this image is
//! the `sandbox_image` (containerd 1.6 starts the image's Entrypoint+Cmd): `sleep` stands in for
//! pause, which only has to hold the pod's namespaces open. Containers give their own command.
use std::{fs, io::Write, path::Path};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// The image's name (`io.containerd.image.name`), a registry-qualified reference nothing pulls.
pub const IMAGE: &str = "reach.test/busybox:1";

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &["sh", "sleep", "httpd", "nc", "cat", "ls"];

/// Writes the image tarball to `out`.
pub fn write_image_tar(out: &Path) -> anyhow::Result<()> {
    let busybox = fs::read(BUSYBOX).with_context(|| {
        format!("reading {BUSYBOX} (Debian's busybox-static): run `cargo xtask setup`")
    })?;
    let layer = layer_tar(&busybox)?;
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Entrypoint": ["/bin/sleep", "1000000"] },
        // An uncompressed layer's diff id is its own digest.
        "rootfs": { "type": "layers", "diff_ids": [digest(&layer)] },
    });
    let config = serde_json::to_vec(&config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))?;
    let mut index_entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    index_entry["annotations"] = serde_json::json!({
        "io.containerd.image.name": IMAGE,
        "org.opencontainers.image.ref.name": IMAGE.rsplit(':').next().unwrap(),
    });
    let index =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [index_entry]}))?;

    let mut tar = tar::Builder::new(fs::File::create(out)?);
    add_file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    add_file(&mut tar, "index.json", &index, 0o644)?;
    for blob in [&layer, &config, &manifest] {
        let name = format!("blobs/sha256/{}", hex(blob));
        add_file(&mut tar, &name, blob, 0o644)?;
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

/// The root filesystem: /bin/busybox, its applets as symlinks, and the directories runc and
/// the CRI mount over (it would create them, but an image normally has them).
fn layer_tar(busybox: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        let mut h = header(tar::EntryType::Directory, 0o755);
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    add_file(&mut tar, "bin/busybox", busybox, 0o755)?;
    for applet in APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    Ok(tar.into_inner()?)
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

fn add_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let mut h = header(tar::EntryType::Regular, mode);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, name, data)?;
    Ok(())
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": digest(blob), "size": blob.len() })
}

fn digest(blob: &[u8]) -> String {
    format!("sha256:{}", hex(blob))
}

fn hex(blob: &[u8]) -> String {
    Sha256::digest(blob).iter().map(|b| format!("{b:02x}")).collect()
}
