//! A clone needs nothing beside it: no Rust file of the workspace refers to the `shared/`
//! folder that sat next to the repository on the first developers' machines. Its recordings
//! live in tests/fixtures/ now (`cargo xtask record-fixtures` records them). Unprivileged.
use std::{
    fs,
    path::{Path, PathBuf},
};

/// What a reference to that folder looks like; spelled in pieces so this file does not match.
fn outside_references() -> [String; 2] {
    [["shared", "reference"].join("/"), ["..", "shared"].join("/")]
}

/// Every `.rs` file under `root`, build outputs and hidden folders (`.git`) left out.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        {
            let entry = entry.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if kind.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    todo.push(path);
                }
            } else if kind.is_file() && name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `path: reference` for every Rust file under `root` that mentions a folder outside it.
fn offenders(root: &Path) -> Vec<String> {
    let needles = outside_references();
    rust_files(root)
        .into_iter()
        .flat_map(|path| {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let shown = path.strip_prefix(root).unwrap_or(&path).display().to_string();
            needles
                .iter()
                .filter(|n| text.contains(n.as_str()))
                .map(|n| format!("{shown}: {n}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").into()
}

#[test]
fn no_rust_file_refers_to_a_folder_beside_the_repository() {
    let root = workspace_root();
    let files = rust_files(&root);
    // The walk must see the files that used to read the outside folder, or it proves nothing.
    for known in ["agent/src/firewall/nftables.rs", "agent/src/firewall/attribute.rs"] {
        assert!(files.contains(&root.join(known)), "the walk missed {known}: {files:#?}");
    }
    let found = offenders(&root);
    assert!(
        found.is_empty(),
        "Rust files refer to a folder outside the repository (use tests/fixtures/):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_names_each_file_that_refers_outside() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let root = tmp.path();
    let [reference, relative] = outside_references();
    for (file, text) in [
        ("agent/src/a.rs", format!("const P: &str = \"/work/{reference}/x.json\";")),
        ("xtask/build.rs", format!("// see {relative}/README.md")),
        ("agent/src/clean.rs", "const P: &str = \"tests/fixtures/x.json\";".to_string()),
        // Build outputs and hidden folders are not the repository's sources.
        ("target/debug/gen.rs", reference.clone()),
        (".git/hooks/x.rs", reference.clone()),
    ] {
        let path = root.join(file);
        fs::create_dir_all(path.parent().expect("parent")).expect("creating folders");
        fs::write(&path, text).expect("writing a sample file");
    }
    assert_eq!(
        offenders(root),
        [format!("agent/src/a.rs: {reference}"), format!("xtask/build.rs: {relative}")]
    );
}
