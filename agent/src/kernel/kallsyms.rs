//! Kernel text addresses → `function+0xoff [module]`, from /proc/kallsyms.
//!
//! A `kfree_skb` event carries the return address of the code that dropped the packet
//! (`location`); naming that function ("tcp_v4_rcv+0x2a3", "nft_do_chain+0x4c [nf_tables]") is
//! what tells a user which layer ate the packet. /proc/kallsyms is read once (≈120k lines) and
//! looked up by binary search, so symbolizing an event costs no I/O. The table is a snapshot:
//! modules and BPF programs loaded afterwards need a fresh [`Kallsyms::load`].
use std::fs;

use anyhow::{Context as _, bail};

const PROC_KALLSYMS: &str = "/proc/kallsyms";

/// The kernel's symbol table, sorted by address. Kept compact (16 bytes a symbol, the names of
/// functions in one string): it stays resident for the whole run of `reach watch`, and a
/// kernel lists over 100k symbols.
#[derive(Debug, Clone, Default)]
pub struct Kallsyms {
    /// One entry per address. Non-text symbols (only present with CONFIG_KALLSYMS_ALL) are kept,
    /// nameless, as fences: an address past the end of a function's code but inside data
    /// must not be blamed on that function.
    syms: Vec<Sym>,
    /// The names of text symbols, back to back (`Sym::name_at`, `Sym::name_len`).
    names: String,
    /// Module names; `Sym::module` indexes this plus one (0 = vmlinux).
    modules: Vec<Box<str>>,
}

#[derive(Debug, Clone, Copy)]
struct Sym {
    addr: u64,
    name_at: u32,
    /// 0 for a data fence (a text symbol always has a name).
    name_len: u16,
    module: u16,
}

impl Sym {
    fn text(&self) -> bool {
        self.name_len > 0
    }
}

/// A resolved address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol<'a> {
    pub name: &'a str,
    pub offset: u64,
    /// `None` for vmlinux.
    pub module: Option<&'a str>,
}

impl std::fmt::Display for Symbol<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:#x}", self.name, self.offset)?;
        match self.module {
            Some(m) => write!(f, " [{m}]"),
            None => Ok(()),
        }
    }
}

impl Kallsyms {
    /// Reads /proc/kallsyms. Fails when kptr_restrict hides the addresses (they read as 0),
    /// which happens without CAP_SYSLOG.
    pub fn load() -> anyhow::Result<Kallsyms> {
        let file = fs::File::open(PROC_KALLSYMS)
            .and_then(|f| Self::read(std::io::BufReader::with_capacity(64 * 1024, f)))
            .with_context(|| format!("reading {PROC_KALLSYMS}"))?;
        Self::checked(file)
    }

    /// [`parse`](Self::parse) plus the checks of [`load`](Self::load).
    pub fn from_text(text: &str) -> anyhow::Result<Kallsyms> {
        Self::checked(Self::parse(text))
    }

    fn checked(syms: Kallsyms) -> anyhow::Result<Kallsyms> {
        if syms.syms.is_empty() {
            bail!("{PROC_KALLSYMS} lists no kernel symbols");
        }
        // Per-cpu symbols legitimately sit at 0, so only "every address is 0" means hidden.
        if syms.syms.iter().all(|s| s.addr == 0) {
            bail!(
                "{PROC_KALLSYMS} shows every address as 0: kptr_restrict hides kernel addresses; \
                 run as root (CAP_SYSLOG) or lower kernel.kptr_restrict"
            );
        }
        Ok(syms)
    }

    /// Parses kallsyms text (`ffffffff820339c0 T tcp_v4_rcv`, `... t nft_do_chain\t[nf_tables]`);
    /// malformed lines are skipped.
    pub fn parse(text: &str) -> Kallsyms {
        let mut table = Kallsyms::default();
        for line in text.lines() {
            table.add_line(line);
        }
        table.finish()
    }

    /// Reads kallsyms text line by line: /proc/kallsyms is several megabytes, which need not
    /// be held at once.
    fn read(reader: impl std::io::BufRead) -> std::io::Result<Kallsyms> {
        let mut table = Kallsyms::default();
        for line in reader.lines() {
            table.add_line(&line?);
        }
        Ok(table.finish())
    }

    /// One line, appended unsorted; malformed lines are skipped.
    fn add_line(&mut self, line: &str) {
        let mut fields = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { return };
        // t/T are functions; W/w are weak symbols, which kallsyms lists only for functions
        // (weak objects are V/v).
        let text = matches!(kind, "t" | "T" | "w" | "W") && !name.is_empty();
        let module = match fields.next().and_then(|m| m.strip_prefix('[')?.strip_suffix(']')) {
            None => 0,
            Some(m) => match self.modules.iter().position(|known| &**known == m) {
                Some(i) => i as u16 + 1,
                None => {
                    self.modules.push(m.into());
                    self.modules.len() as u16
                }
            },
        };
        let (name_at, name_len) = if text {
            // Names longer than a u16 do not exist in practice; cut rather than overflow.
            let name = &name[..name.floor_char_boundary(u16::MAX as usize)];
            let at = self.names.len() as u32;
            self.names.push_str(name);
            (at, name.len() as u16)
        } else {
            (0, 0)
        };
        self.syms.push(Sym { addr, name_at, name_len, module });
    }

    fn finish(mut self) -> Kallsyms {
        // vmlinux is listed in address order, modules and BPF programs after it; the sort is
        // stable, so symbols at one address stay in listing order.
        self.syms.sort_by_key(|s| s.addr);
        // Several names can share an address (`_stext`, `_text`, ...). Like the kernel's %pS,
        // keep the first listed; a text symbol beats a data fence at the same address.
        self.syms.dedup_by(|later, kept| {
            if later.addr != kept.addr {
                return false;
            }
            if !kept.text() && later.text() {
                *kept = *later;
            }
            true
        });
        self.syms.shrink_to_fit();
        self.names.shrink_to_fit();
        self
    }

    fn name(&self, sym: &Sym) -> &str {
        &self.names[sym.name_at as usize..sym.name_at as usize + sym.name_len as usize]
    }

    /// The function containing `addr`, or `None` before the first symbol or inside data.
    pub fn lookup(&self, addr: u64) -> Option<Symbol<'_>> {
        let idx = self.syms.partition_point(|s| s.addr <= addr);
        let sym = &self.syms[idx.checked_sub(1)?];
        if !sym.text() {
            return None;
        }
        let module = match sym.module {
            0 => None,
            m => self.modules.get(m as usize - 1).map(|m| &**m),
        };
        Some(Symbol { name: self.name(sym), offset: addr - sym.addr, module })
    }

    /// `tcp_v4_rcv+0x2a3`, `nft_do_chain+0x4c [nf_tables]`.
    pub fn symbolize(&self, addr: u64) -> Option<String> {
        self.lookup(addr).map(|s| s.to_string())
    }

    /// The address of a text symbol (first match; vmlinux and modules alike).
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.syms.iter().find(|s| s.text() && self.name(s) == name).map(|s| s.addr)
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T srso_alias_untrain_ret
ffffffff81000000 T _stext
ffffffff82033990 t __pfx_tcp_v4_rcv
ffffffff820339c0 T tcp_v4_rcv
ffffffff82034000 W weak_fn
ffffffff82035000 t tcp_v4_send_reset
ffffffff82400000 D __start_rodata
ffffffffc0a00000 t nft_do_chain\t[nf_tables]
ffffffffc0a00100 T nft_trace_init\t[nf_tables]
ffffffffc0b00000 t br_handle_frame\t[bridge]
not a line
zzzz T bad_address
";

    #[test]
    fn reading_line_by_line_matches_parsing_the_text() {
        let read = Kallsyms::read(std::io::Cursor::new(SAMPLE)).unwrap();
        let parsed = Kallsyms::parse(SAMPLE);
        assert_eq!(read.len(), parsed.len());
        for addr in [0xffffffff82033c63u64, 0xffffffffc0a00101, 0xffffffff82400010, 0x10] {
            assert_eq!(read.symbolize(addr), parsed.symbolize(addr), "{addr:#x}");
        }
    }

    #[test]
    fn exact_and_inside_addresses() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.symbolize(0xffffffff820339c0).as_deref(), Some("tcp_v4_rcv+0x0"));
        assert_eq!(k.symbolize(0xffffffff82033c63).as_deref(), Some("tcp_v4_rcv+0x2a3"));
        assert_eq!(k.symbolize(0xffffffff820339bf).as_deref(), Some("__pfx_tcp_v4_rcv+0x2f"));
        assert_eq!(k.symbolize(0xffffffff82034010).as_deref(), Some("weak_fn+0x10"));
        assert_eq!(k.address_of("tcp_v4_send_reset"), Some(0xffffffff82035000));
    }

    #[test]
    fn before_the_first_text_symbol_and_inside_data() {
        let k = Kallsyms::parse(SAMPLE);
        // Only the absolute per-cpu symbol lies below: it is no function.
        assert_eq!(k.symbolize(0x1000), None);
        assert_eq!(Kallsyms::parse("ffffffff81000000 T _stext\n").symbolize(0x10), None);
        // Past the last function, inside rodata: not blamed on tcp_v4_send_reset.
        assert_eq!(k.symbolize(0xffffffff82400010), None);
        assert_eq!(k.symbolize(0xffffffff823fffff).as_deref(), Some("tcp_v4_send_reset+0x3cafff"));
    }

    #[test]
    fn module_symbols_carry_their_module() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(
            k.symbolize(0xffffffffc0a0004c).as_deref(),
            Some("nft_do_chain+0x4c [nf_tables]")
        );
        assert_eq!(
            k.lookup(0xffffffffc0a00101),
            Some(Symbol { name: "nft_trace_init", offset: 1, module: Some("nf_tables") })
        );
        assert_eq!(
            k.symbolize(0xffffffffc0b00002).as_deref(),
            Some("br_handle_frame+0x2 [bridge]")
        );
    }

    #[test]
    fn aliases_keep_the_first_listed_name() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.symbolize(0xffffffff81000000).as_deref(), Some("srso_alias_untrain_ret+0x0"));
        // Malformed lines are skipped, aliases merged.
        assert_eq!(k.len(), 10);
    }

    #[test]
    fn hidden_addresses_are_a_clear_error() {
        let hidden = "0000000000000000 T _stext\n0000000000000000 T tcp_v4_rcv\n";
        let e = Kallsyms::from_text(hidden).unwrap_err().to_string();
        assert!(e.contains("kptr_restrict"), "{e}");
        assert!(Kallsyms::from_text("").is_err());
        assert!(Kallsyms::from_text(SAMPLE).is_ok());
    }

    #[test]
    fn live_tcp_v4_rcv() {
        let k = Kallsyms::load().expect("tests run as root");
        // Find the address independently of the parser under test.
        let text = fs::read_to_string(PROC_KALLSYMS).unwrap();
        let addr = text
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3 && f[2] == "tcp_v4_rcv")
                    .then(|| u64::from_str_radix(f[0], 16).unwrap())
            })
            .expect("tcp_v4_rcv in /proc/kallsyms");
        assert_eq!(k.symbolize(addr).as_deref(), Some("tcp_v4_rcv+0x0"));
        assert_eq!(k.symbolize(addr + 5).as_deref(), Some("tcp_v4_rcv+0x5"));
        assert_eq!(k.address_of("tcp_v4_rcv"), Some(addr));
    }
}
