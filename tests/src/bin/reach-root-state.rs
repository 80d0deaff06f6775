//! `reach-root-state save FILE` records the root network namespace's state
//! (`reach_tests::root_state`); `reach-root-state compare FILE` reads it again and exits 1 naming
//! every difference. `cargo xtask test` runs both around the suite.
use std::process::exit;

use reach_tests::root_state;

const USAGE: &str = "usage: reach-root-state save|compare FILE";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [verb, file] = &args[..] else {
        eprintln!("{USAGE}");
        exit(2)
    };
    let now = root_state::read();
    match verb.as_str() {
        "save" => {
            let text = serde_json::to_string_pretty(&now).expect("a state serialises");
            std::fs::write(file, text).unwrap_or_else(|e| {
                eprintln!("reach-root-state: writing {file}: {e}");
                exit(2)
            });
        }
        "compare" => {
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
                eprintln!("reach-root-state: reading {file}: {e}");
                exit(2)
            });
            let before: root_state::State = serde_json::from_str(&text).unwrap_or_else(|e| {
                eprintln!("reach-root-state: {file} is no saved state: {e}");
                exit(2)
            });
            let d = root_state::diff(&before, &now);
            if !d.is_empty() {
                eprintln!("reach-root-state: the root network namespace changed during the suite:");
                for l in &d {
                    eprintln!("  {l}");
                }
                exit(1);
            }
            println!(
                "reach-root-state: the root network namespace is as it was ({} sections)",
                now.len()
            );
        }
        _ => {
            eprintln!("{USAGE}");
            exit(2)
        }
    }
}
