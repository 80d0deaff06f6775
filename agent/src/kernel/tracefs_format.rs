//! Parses a tracepoint's `format` file: the record layout of a classic tracepoint, which (unlike
//! BTF-typed tracepoints) is only described there and differs between kernels.
use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, anyhow};
use reach_common::field::Field;

/// Field name → location, from a format file's `field:TYPE NAME; offset:N; size:N;` lines.
#[derive(Debug, Clone, Default)]
pub struct Format {
    fields: HashMap<String, Field>,
}

impl Format {
    pub fn read(tracefs: &Path, category: &str, name: &str) -> anyhow::Result<Self> {
        let path = tracefs.join("events").join(category).join(name).join("format");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("field:") else { continue };
            let mut decl = "";
            let (mut offset, mut size) = (None, None);
            for part in rest.split(';') {
                let part = part.trim();
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.trim().parse::<u32>().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.trim().parse::<u8>().ok();
                } else if decl.is_empty() {
                    decl = part;
                }
            }
            // `const void * skaddr`, `__u8 saddr[4]`: the name is the last word, minus [N].
            let name = decl.rsplit([' ', '*']).next().unwrap_or("").split('[').next().unwrap_or("");
            if let (false, Some(offset), Some(size)) = (name.is_empty(), offset, size) {
                fields.insert(name.to_string(), Field::at(offset, size));
            }
        }
        Self { fields }
    }

    /// The field, or an error naming the tracepoint's missing field.
    pub fn field(&self, name: &str) -> anyhow::Result<Field> {
        self.fields
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("tracepoint record has no field {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS_ENTER_BIND: &str = "name: sys_enter_bind\nID: 1612\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
\tfield:int fd;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:struct sockaddr * umyaddr;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:int addrlen;\toffset:32;\tsize:8;\tsigned:0;\n\nprint fmt: \"fd: 0x%08lx\"\n";

    #[test]
    fn parses_syscall_record() {
        let f = Format::parse(SYS_ENTER_BIND);
        assert_eq!(f.field("fd").unwrap(), Field::at(16, 8));
        assert_eq!(f.field("umyaddr").unwrap(), Field::at(24, 8));
        assert_eq!(f.field("addrlen").unwrap(), Field::at(32, 8));
        assert!(f.field("nope").is_err());
    }

    #[test]
    fn parses_arrays_and_pointers() {
        let f = Format::parse(
            "\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n",
        );
        assert_eq!(f.field("skaddr").unwrap(), Field::at(8, 8));
        assert_eq!(f.field("saddr").unwrap(), Field::at(32, 4));
    }

    #[test]
    fn reads_the_live_state_tracepoint() {
        let fs =
            crate::kernel::pseudofs::tracefs().expect("tracefs is needed (mounted or mountable)");
        let f = Format::read(&fs.path, "sock", "inet_sock_set_state").unwrap();
        for name in ["skaddr", "oldstate", "newstate", "protocol"] {
            assert!(f.field(name).is_ok(), "{name}");
        }
    }
}
