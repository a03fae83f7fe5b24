//! ARCHITECTURE.md's layers as a contract: every module of `src/` sits on one layer, and its code may name
//! (`crate::x`, or `zbot::x` in the binary) only modules on lower layers; a crate that speaks to one
//! outside service is named by one module only. The layers are read from ARCHITECTURE.md itself, so the
//! document and the code cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::repo_root;

/// `layer N: a b c` lines from ARCHITECTURE.md: module → layer.
fn layers() -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).unwrap();
    let mut layers = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("layer ") else {
            continue;
        };
        let Some((number, modules)) = rest.split_once(':') else {
            continue;
        };
        let number: usize = number.trim().parse().expect("layer number");
        for module in modules.split_whitespace() {
            let module = module.trim_matches('`').trim_end_matches('/');
            assert!(
                layers.insert(module.to_string(), number).is_none(),
                "{module} is on two layers"
            );
        }
    }
    assert!(
        !layers.is_empty(),
        "ARCHITECTURE.md has no `layer N:` lines"
    );
    layers
}

/// `crate X: module` lines from ARCHITECTURE.md.
fn crate_owners() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("crate "))
        .filter_map(|rest| {
            let (name, file) = rest.split_once(':')?;
            Some((
                name.trim().trim_matches('`').to_string(),
                file.trim().trim_matches('`').to_string(),
            ))
        })
        .collect()
}

/// The module a file belongs to: `src/chat/bot.rs` → `chat`, `src/app.rs` → `app`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code without comments (`//` to the end of a line), so prose may name any module.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) if !l[..at].contains('"') => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `text` names through `prefix` (`crate::` or `zbot::`), with braces expanded one level.
fn named_modules(text: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        // `crate::` inside a longer path (`zbot::crate::`) does not occur; a preceding identifier
        // character means another path (e.g. `my_crate::`).
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn modules_only_use_lower_layers() {
    let layers = layers();
    let src = repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let Some(&layer) = layers.get(&module) else {
            wrong.push(format!(
                "{}: module `{module}` is on no layer in ARCHITECTURE.md",
                file.display()
            ));
            continue;
        };
        let text = code(&std::fs::read_to_string(file).unwrap());
        let prefix = if module == "main" {
            "zbot::"
        } else {
            "crate::"
        };
        for used in named_modules(&text, prefix) {
            if used == module {
                continue;
            }
            match layers.get(&used) {
                Some(&l) if l < layer => {}
                Some(&l) => wrong.push(format!(
                    "{}: `{module}` (layer {layer}) uses `{used}` (layer {l}): only lower layers",
                    file.display()
                )),
                None => wrong.push(format!(
                    "{}: uses `{used}`, which is on no layer",
                    file.display()
                )),
            }
        }
    }
    for module in layers.keys() {
        let exists = src.join(format!("{module}.rs")).exists() || src.join(module).is_dir();
        if !exists {
            wrong.push(format!(
                "ARCHITECTURE.md names `{module}`, which is not in src/"
            ));
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn each_outside_service_crate_is_named_by_one_module() {
    let owners = crate_owners();
    assert!(
        owners.len() >= 3,
        "ARCHITECTURE.md names the owners of octocrab, slack_morphism and sqlx"
    );
    let src = repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for (name, owner) in &owners {
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap().display().to_string();
            let text = code(&std::fs::read_to_string(file).unwrap());
            let names_it = text.match_indices(name.as_str()).any(|(at, _)| {
                let before = text[..at].chars().next_back();
                let after = text[at + name.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            // An owner ending in `/` is a directory: its files may all name the crate.
            let owns = match owner.strip_suffix('/') {
                Some(dir) => relative.starts_with(&format!("{dir}/")),
                None => relative == *owner,
            };
            if names_it && !owns {
                wrong.push(format!("{relative} names `{name}`; only {owner} may"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_tidy_reader_sees_imports() {
    let text = "use crate::{config::Config, domain::AppName};\nuse crate::store::Store;\nfn f() { crate::reply::x() }";
    assert_eq!(
        named_modules(text, "crate::"),
        ["config", "domain", "store", "reply"]
    );
    assert_eq!(code("let x = 1; // crate::app\n"), "let x = 1; ");
}

/// Every migration exists in both dialects: `migrations/NNNN_name.sql` (SQLite) and
/// `migrations/postgres/NNNN_name.sql`, the same numbers and names, each named in the store.
#[test]
fn every_migration_exists_in_both_dialects() {
    let names = |dir: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect()
    };
    let root = repo_root().join("migrations");
    let sqlite = names(&root);
    let postgres = names(&root.join("postgres"));
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/ (SQLite) and migrations/postgres/ must hold the same migrations"
    );
    let store = std::fs::read_to_string(repo_root().join("src/store/mod.rs")).unwrap();
    for name in &sqlite {
        for path in [
            format!("migrations/{name}"),
            format!("migrations/postgres/{name}"),
        ] {
            assert!(
                store.contains(&path),
                "src/store/mod.rs does not embed {path}"
            );
        }
    }
}
