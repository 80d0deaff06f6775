//! Struct layouts and enum values of the running kernel, read from its BTF.
//!
//! Rust BPF programs get no CO-RE relocations, so reach resolves every field it reads
//! (`sock.__sk_common.skc_num`, ...) here at start-up and hands the offsets to the programs as
//! globals. Enum values (e.g. `skb_drop_reason`, which differ between kernels) are decoded the
//! same way, never from a compiled-in table.
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use btf_rs::{Backend, Btf, BtfType, Type};
use fallible_iterator::FallibleIterator as _;

/// Where a field lives inside its outermost struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLoc {
    /// Offset in bits from the start of the outer struct.
    pub bit_offset: u32,
    /// Width in bits when the field is a bitfield.
    pub bitfield_bits: Option<u32>,
    /// Size in bytes of the field's type (of the storage unit for bitfields).
    pub byte_size: u32,
}

impl FieldLoc {
    /// Byte offset; for bitfields, of the byte holding the field's first bit.
    pub fn byte_offset(&self) -> u32 {
        self.bit_offset / 8
    }
}

pub struct KernelBtf {
    btf: Btf,
}

/// The running kernel's BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

impl KernelBtf {
    pub fn load() -> anyhow::Result<Self> {
        if !Path::new(VMLINUX).exists() {
            anyhow::bail!(
                "this kernel exposes no BTF ({VMLINUX} is missing): reach reads every kernel \
                 offset from it; run a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's, \
                 Ubuntu's and WSL2's are)"
            );
        }
        Self::from_file(Path::new(VMLINUX)).with_context(|| {
            format!("reading {VMLINUX}: reach needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
        })
    }

    /// Parses lazily from a private read-only mapping of the file (btf-rs's mmap backend): only
    /// an index of type offsets is built, about 1 MB for vmlinux, where its caching backend
    /// decodes every type and string up front (about 45 MB and 100 ms for vmlinux). sysfs lets
    /// BTF be mapped since Linux 6.16 or so; before that the bytes are copied into a memfd and
    /// that is mapped, which costs one read of the file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        match Btf::from_file_with_backend(path, Backend::Mmap) {
            Ok(btf) => Ok(Self { btf }),
            Err(direct) => Self::from_memfd_copy(path)
                .with_context(|| format!("mapping {} directly failed: {direct}", path.display())),
        }
    }

    /// [`from_file`](Self::from_file) for a file that cannot be mapped: its bytes are copied
    /// into an anonymous memory file and that is mapped (the mapping keeps the pages; the
    /// descriptor is closed).
    pub fn from_memfd_copy(path: &Path) -> anyhow::Result<Self> {
        let copy = memfd_copy(path)?;
        let fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&copy));
        let btf = Btf::from_file_with_backend(&fd, Backend::Mmap).map_err(|e| anyhow!("{e}"))?;
        Ok(Self { btf })
    }

    /// BTF from bytes in memory (a program's `.BTF` section; the fuzzer's inputs).
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        Ok(Self { btf: Btf::from_bytes(bytes).map_err(|e| anyhow!("{e}"))? })
    }

    /// A module's BTF (`/sys/kernel/btf/<module>`), which is split BTF: its type ids continue
    /// those of `base` (vmlinux) and cannot be parsed on their own.
    pub fn from_split_file(path: &Path, base: &KernelBtf) -> anyhow::Result<Self> {
        Ok(Self { btf: Btf::from_split_file(path, &base.btf).map_err(|e| anyhow!("{e}"))? })
    }

    /// Resolves `path` (dot-separated member names, e.g. `__sk_common.skc_num`) in `struct
    /// name`, looking through anonymous structs/unions the way C does.
    pub fn field(&self, struct_name: &str, path: &str) -> anyhow::Result<FieldLoc> {
        let mut ty = self.named_struct(struct_name)?;
        let mut loc = FieldLoc { bit_offset: 0, bitfield_bits: None, byte_size: 0 };
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (member_loc, member_ty) = self.find_member(&ty, part)?.ok_or_else(|| {
                anyhow!("struct {struct_name} has no member {}", parts[..=i].join("."))
            })?;
            loc.bit_offset += member_loc.bit_offset;
            loc.bitfield_bits = member_loc.bitfield_bits;
            loc.byte_size = member_loc.byte_size;
            ty = member_ty;
        }
        Ok(loc)
    }

    /// Whether `struct name` has member `path` (kernels add and remove fields between versions).
    pub fn has_field(&self, struct_name: &str, path: &str) -> bool {
        self.field(struct_name, path).is_ok()
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> anyhow::Result<u32> {
        match self.named_struct(name)? {
            Type::Struct(s) | Type::Union(s) => Ok(s.size() as u32),
            _ => unreachable!("named_struct returns structs"),
        }
    }

    /// All `(name, value)` pairs of `enum name` (regular or 64-bit enum).
    pub fn enum_values(&self, name: &str) -> anyhow::Result<Vec<(String, i64)>> {
        for ty in self.btf.resolve_types_by_name(name).map_err(|e| anyhow!("enum {name}: {e}"))? {
            match ty {
                Type::Enum(e) => {
                    return e
                        .members
                        .iter()
                        .map(|m| {
                            let v =
                                if e.is_signed() { m.val() as i32 as i64 } else { m.val() as i64 };
                            Ok((self.name_of(m)?, v))
                        })
                        .collect();
                }
                Type::Enum64(e) => {
                    return e
                        .members
                        .iter()
                        .map(|m| Ok((self.name_of(m)?, m.val() as i64)))
                        .collect();
                }
                _ => {}
            }
        }
        bail!("the kernel's BTF has no enum {name}")
    }

    /// The value of an enumerator found in any enum, named or anonymous (kernel headers define
    /// many flag bits, e.g. `INET_FLAGS_FREEBIND`, in anonymous enums).
    pub fn enumerator(&self, name: &str) -> anyhow::Result<i64> {
        // Enumerators are not types, so no name index covers them: one pass over all types.
        let mut types = self.btf.type_iter();
        while let Some(ty) = types.next().map_err(|e| anyhow!("{e}"))? {
            match &ty {
                Type::Enum(e) => {
                    for m in &e.members {
                        if self.name_of(m).is_ok_and(|n| n == name) {
                            return Ok(if e.is_signed() {
                                m.val() as i32 as i64
                            } else {
                                m.val() as i64
                            });
                        }
                    }
                }
                Type::Enum64(e) => {
                    for m in &e.members {
                        if self.name_of(m).is_ok_and(|n| n == name) {
                            return Ok(m.val() as i64);
                        }
                    }
                }
                _ => {}
            }
        }
        bail!("the kernel's BTF has no enumerator {name}")
    }

    fn named_struct(&self, name: &str) -> anyhow::Result<Type> {
        self.btf
            .resolve_types_by_name(name)
            .map_err(|e| anyhow!("struct {name}: {e}"))?
            .into_iter()
            .find(|t| matches!(t, Type::Struct(_) | Type::Union(_)))
            .ok_or_else(|| anyhow!("the kernel's BTF has no struct {name}"))
    }

    fn name_of(&self, t: &dyn BtfType) -> anyhow::Result<String> {
        self.btf.resolve_name(t).map_err(|e| anyhow!("{e}"))
    }

    /// Finds `name` among `ty`'s members, descending into anonymous members. Returns the
    /// member's location relative to `ty` and its (typedef/const-stripped) type.
    fn find_member(&self, ty: &Type, name: &str) -> anyhow::Result<Option<(FieldLoc, Type)>> {
        let (Type::Struct(s) | Type::Union(s)) = ty else {
            bail!("member {name} looked up in a {} (not a struct or union)", ty.name());
        };
        for m in &s.members {
            let member_name = self.name_of(m).unwrap_or_default();
            let member_ty =
                self.strip(self.btf.resolve_chained_type(m).map_err(|e| anyhow!("{e}"))?)?;
            if member_name == name {
                let loc = FieldLoc {
                    bit_offset: m.bit_offset(),
                    bitfield_bits: m.bitfield_size().filter(|&b| b != 0),
                    byte_size: self.size_of(&member_ty)?,
                };
                return Ok(Some((loc, member_ty)));
            }
            if member_name.is_empty()
                && matches!(member_ty, Type::Struct(_) | Type::Union(_))
                && let Some((mut inner, inner_ty)) = self.find_member(&member_ty, name)?
            {
                inner.bit_offset += m.bit_offset();
                return Ok(Some((inner, inner_ty)));
            }
        }
        Ok(None)
    }

    /// Follows typedef/const/volatile/restrict/type-tag to the underlying type.
    fn strip(&self, mut ty: Type) -> anyhow::Result<Type> {
        for _ in 0..32 {
            match &ty {
                Type::Typedef(_)
                | Type::Const(_)
                | Type::Volatile(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    let bt = ty.as_btf_type().expect("qualifiers are BTF types");
                    ty = self.btf.resolve_chained_type(bt).map_err(|e| anyhow!("{e}"))?;
                }
                _ => return Ok(ty),
            }
        }
        bail!("type qualifier chain too long")
    }

    fn size_of(&self, ty: &Type) -> anyhow::Result<u32> {
        Ok(match ty {
            Type::Int(i) => i.size() as u32,
            Type::Ptr(_) => 8,
            Type::Struct(s) | Type::Union(s) => s.size() as u32,
            Type::Enum(e) => e.size() as u32,
            Type::Enum64(e) => e.size() as u32,
            Type::Float(f) => f.size() as u32,
            Type::Array(a) => {
                let elem =
                    self.strip(self.btf.resolve_chained_type(a).map_err(|e| anyhow!("{e}"))?)?;
                self.size_of(&elem)? * a.len() as u32
            }
            _ => 0,
        })
    }
}

/// aya's parse of the running kernel's BTF (for loading tp_btf and fexit programs), shared by
/// everyone who asks while one is alive: start-up loads several objects, and each parse costs
/// about 20 ms and 15 MB. Hold the `Arc` across a start-up to share it; it is freed with the
/// last holder.
pub fn aya_btf() -> Result<std::sync::Arc<aya::Btf>, aya::BtfError> {
    use std::sync::{Arc, Mutex, Weak};
    static SHARED: Mutex<Weak<aya::Btf>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(btf) = shared.upgrade() {
        return Ok(btf);
    }
    let btf = Arc::new(aya::Btf::from_sys_fs()?);
    *shared = Arc::downgrade(&btf);
    Ok(btf)
}

/// The file's bytes in an anonymous memory file (memfd), for mapping what cannot be mapped.
fn memfd_copy(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::{io::Write as _, os::fd::FromRawFd as _};
    let bytes = std::fs::read(path)?;
    // SAFETY: a constant C string; the returned fd is owned by the File below.
    let fd = unsafe { libc::memfd_create(c"reach-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create for BTF");
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(&bytes).context("copying BTF into a memfd")?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btf() -> KernelBtf {
        KernelBtf::load().expect("these tests read the running kernel's BTF")
    }

    #[test]
    fn sock_common_layout_matches_the_stable_abi() {
        // struct sock_common starts with addr pair (8), hash (4), dport/num (2+2): the one part
        // of its layout every kernel since 4.x shares, so a wrong resolver cannot pass this.
        let b = btf();
        let num = b.field("sock", "__sk_common.skc_num").unwrap();
        assert_eq!((num.byte_offset(), num.byte_size, num.bitfield_bits), (14, 2, None));
        let dport = b.field("sock", "__sk_common.skc_dport").unwrap();
        assert_eq!(dport.byte_offset(), 12);
        // skc_rcv_saddr lives in an anonymous struct inside an anonymous union.
        let saddr = b.field("sock", "__sk_common.skc_rcv_saddr").unwrap();
        assert_eq!((saddr.byte_offset(), saddr.byte_size), (4, 4));
        let family = b.field("sock_common", "skc_family").unwrap();
        assert_eq!((family.byte_offset(), family.byte_size), (16, 2));
    }

    /// Kernels before ~6.16 cannot map their BTF from sysfs: the memfd copy must read the same.
    #[test]
    fn a_memfd_copy_reads_like_the_mapped_file() {
        let copied = KernelBtf::from_memfd_copy(Path::new(VMLINUX)).unwrap();
        let b = btf();
        for (st, f) in [("sock", "__sk_common.skc_num"), ("sk_buff", "head"), ("net", "ns.inum")] {
            assert_eq!(copied.field(st, f).unwrap(), b.field(st, f).unwrap(), "{st}.{f}");
        }
        assert_eq!(
            copied.enum_values("tcp_ca_state").unwrap(),
            b.enum_values("tcp_ca_state").unwrap()
        );
    }

    #[test]
    fn bitfields_report_their_width() {
        let b = btf();
        let reuse = b.field("sock_common", "skc_reuse").unwrap();
        assert_eq!(reuse.bitfield_bits, Some(4));
        let reuseport = b.field("sock_common", "skc_reuseport").unwrap();
        assert_eq!(reuseport.bitfield_bits, Some(1));
        assert_eq!(reuseport.bit_offset, reuse.bit_offset + 4);
    }

    #[test]
    fn missing_members_and_structs_are_named_in_errors() {
        let b = btf();
        let e = b.field("sock", "__sk_common.no_such_field").unwrap_err().to_string();
        assert!(e.contains("__sk_common.no_such_field"), "{e}");
        let e = b.field("no_such_struct_reach", "x").unwrap_err().to_string();
        assert!(e.contains("no_such_struct_reach"), "{e}");
        assert!(!b.has_field("sock", "skc_nonexistent"));
    }

    #[test]
    fn drop_reasons_come_from_the_kernel_enum() {
        let reasons = btf().enum_values("skb_drop_reason").unwrap();
        let get = |n: &str| reasons.iter().find(|(name, _)| name == n).map(|(_, v)| *v);
        assert_eq!(get("SKB_NOT_DROPPED_YET"), Some(0));
        assert!(get("SKB_DROP_REASON_NO_SOCKET").is_some());
        assert!(get("SKB_DROP_REASON_NETFILTER_DROP").is_some());
        assert_ne!(get("SKB_DROP_REASON_NO_SOCKET"), get("SKB_DROP_REASON_NETFILTER_DROP"));
    }

    #[test]
    fn struct_sizes() {
        assert!(btf().struct_size("sock").unwrap() > btf().struct_size("sock_common").unwrap());
    }
}
