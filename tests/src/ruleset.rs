//! "The ruleset is unchanged": `nft list ruleset` of a namespace before and after, with nft's
//! exit status checked each time. Without that check a failing `nft` prints nothing, and ""
//! equals "" — the comparison would pass whatever happened to the ruleset.
use std::process::Command;

use reach_agent::lab::{self, NetNsFd};

/// `nft ARGS` in `ns` (`None`: the caller's own namespace, read-only use only); its stdout, or
/// a panic naming the command and its stderr.
pub fn nft(ns: Option<&NetNsFd>, args: &[&str]) -> String {
    match ns {
        Some(ns) => ns
            .run(lab::NFT.name, args)
            .unwrap_or_else(|e| panic!("nft {args:?} in {}: {e}", ns.path().display())),
        None => {
            let nft = lab::NFT.path().unwrap_or_else(|e| panic!("{e}"));
            let mut cmd = Command::new(nft);
            cmd.args(args);
            lab::run_within(&mut cmd, lab::DEFAULT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
        }
    }
}

/// `nft list ruleset` of `ns` (`None`: the caller's, i.e. the root namespace). Read-only.
pub fn nft_ruleset(ns: Option<&NetNsFd>) -> String {
    nft(ns, &["list", "ruleset"])
}

/// A namespace's ruleset as it was at [`RulesetSnapshot::take`].
pub struct RulesetSnapshot<'a> {
    ns: Option<&'a NetNsFd>,
    before: String,
}

impl<'a> RulesetSnapshot<'a> {
    pub fn take(ns: Option<&'a NetNsFd>) -> Self {
        RulesetSnapshot { ns, before: nft_ruleset(ns) }
    }

    /// The ruleset as it was taken.
    pub fn before(&self) -> &str {
        &self.before
    }

    /// Panics, showing the lines that differ, if the ruleset is not what it was; `what` names
    /// what ran in between.
    pub fn assert_unchanged(&self, what: &str) {
        let now = nft_ruleset(self.ns);
        if now == self.before {
            return;
        }
        let gone: Vec<&str> =
            self.before.lines().filter(|l| !now.lines().any(|n| n == *l)).collect();
        let added: Vec<&str> =
            now.lines().filter(|l| !self.before.lines().any(|b| b == *l)).collect();
        panic!(
            "the ruleset of {} changed during {what}:\n--- lines gone ---\n{}\n--- lines added \
             ---\n{}",
            self.ns.map_or("the caller's (root) namespace".to_string(), |n| n
                .path()
                .display()
                .to_string()),
            gone.join("\n"),
            added.join("\n")
        );
    }
}
