//! The shape of the workspace, enforced (docs/ARCHITECTURE.md):
//!
//! ```text
//!  sluice (binary) ──► pg, flight, databricks (front-ends) ──► gateway (core) ──► auth, planner, workers
//! ```
//!
//! - front-ends depend on the core, never on each other, on `workers` or on the binary;
//! - the core never depends on a front-end or the binary; the bottom crates on none of them;
//! - no circle of `use` between the files of one crate (`planner` excepted: DataFusion's
//!   rewrites and our catalog call each other by design);
//! - no crate holds more than 35 % of the Rust lines.
//!
//! Read from `cargo metadata` and the source files, so a new crate or a new `use` is checked
//! the day it lands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const FRONT_ENDS: [&str; 3] = ["pg", "flight", "databricks"];
const BOTTOM: [&str; 4] = ["auth", "planner", "spark", "workers"];
const BINARY: &str = "sluice";
const CORE: &str = "gateway";

struct Crate {
    name: String,
    /// Dependencies on other workspace crates (normal and build; dev-dependencies are tests').
    deps: BTreeSet<String>,
    src: PathBuf,
}

fn workspace() -> Vec<Crate> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| names.contains(d))
                .collect();
            Crate {
                name: p["name"].as_str().unwrap().to_string(),
                deps,
                src: manifest.parent().unwrap().join("src"),
            }
        })
        .collect()
}

#[test]
fn dependency_rule() {
    let crates = workspace();
    let names: BTreeSet<&str> = crates.iter().map(|c| c.name.as_str()).collect();
    for expected in FRONT_ENDS.iter().chain(&BOTTOM).chain(&[CORE, BINARY]) {
        assert!(
            names.contains(expected),
            "crate {expected} is gone: update this test and docs/ARCHITECTURE.md"
        );
    }
    let mut broken = Vec::new();
    for c in &crates {
        let name = c.name.as_str();
        let forbidden: Vec<&str> = if FRONT_ENDS.contains(&name) {
            let mut f: Vec<&str> = FRONT_ENDS.iter().copied().filter(|f| *f != name).collect();
            f.extend(["workers", BINARY]);
            f
        } else if name == CORE {
            FRONT_ENDS.iter().copied().chain([BINARY]).collect()
        } else if BOTTOM.contains(&name) {
            FRONT_ENDS.iter().copied().chain([BINARY, CORE]).collect()
        } else {
            // bench, fuzz: tools beside the product; nothing in the product depends on them.
            vec![BINARY]
        };
        for dep in &c.deps {
            if forbidden.contains(&dep.as_str()) {
                broken.push(format!("{name} depends on {dep}"));
            }
        }
        if FRONT_ENDS.contains(&name) && !c.deps.contains(CORE) {
            broken.push(format!("front-end {name} does not go through {CORE}"));
        }
    }
    for c in &crates {
        if ["bench", "fuzz"].contains(&c.name.as_str()) {
            continue;
        }
        for tool in ["bench", "fuzz"] {
            if c.deps.contains(tool) {
                broken.push(format!("{} depends on the tool crate {tool}", c.name));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "the dependency rule is broken:\n{}",
        broken.join("\n")
    );
}

/// The modules of a crate: module path (`hs2::operation`) → file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                if parts.first().map(String::as_str) == Some("bin") {
                    continue;
                }
                out.insert(parts.join("::"), path);
            }
        }
    }
    walk(src, src, &mut out);
    out
}

/// The module paths a file names: `crate::a::b`, `super::x`, `self::y` and, in a
/// module's own `use` list, `a::b` for a child `a`. Comments are skipped.
fn references(module: &str, text: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let here: Vec<&str> = if module.is_empty() {
        vec![]
    } else {
        module.split("::").collect()
    };
    // `mod.rs`/`lib.rs` resolve `super` against their parent; so does any file here.
    let mut refs = BTreeSet::new();
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        // A path: ident(::ident)* possibly followed by ::{ a, b::c }.
        let start = i;
        while i < bytes.len()
            && (is_ident(bytes[i]) || (bytes[i] == b':' && bytes.get(i + 1) == Some(&b':')))
        {
            i += if bytes[i] == b':' { 2 } else { 1 };
        }
        let path = &code[start..i];
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<String> = match segments.first() {
            Some(&"crate") => vec![],
            Some(&"super") => {
                let mut b: Vec<String> = here.iter().map(|s| s.to_string()).collect();
                b.pop();
                b
            }
            Some(&"self") => here.iter().map(|s| s.to_string()).collect(),
            _ => {
                // A child module named without `self::` (`use child::X;`).
                let mut b: Vec<String> = here.iter().map(|s| s.to_string()).collect();
                if let Some(first) = segments.first() {
                    b.push(first.to_string());
                    if segments.len() > 1 && known.contains_key(&b.join("::")) {
                        refs.insert(b.join("::"));
                    }
                }
                continue;
            }
        };
        let mut rest = &segments[1..];
        while let Some(s) = rest.first() {
            if *s == "super" {
                base.pop();
            } else {
                break;
            }
            rest = &rest[1..];
        }
        // The longest known module along the path.
        let mut best = None;
        for s in rest {
            base.push(s.to_string());
            if known.contains_key(&base.join("::")) {
                best = Some(base.join("::"));
            }
        }
        // `use super::{a, b}`: look inside the braces too.
        if bytes.get(i) == Some(&b'{') {
            let close = code[i..].find('}').map(|c| i + c).unwrap_or(code.len());
            for item in code[i + 1..close].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                let mut b = base.clone();
                b.push(first.to_string());
                if known.contains_key(&b.join("::")) {
                    refs.insert(b.join("::"));
                }
            }
        }
        match best {
            Some(m) => {
                refs.insert(m);
            }
            None if !base.is_empty() || segments.first() == Some(&"crate") => {
                // An item of the module `base` minus the item name.
                let mut b = base.clone();
                while !b.is_empty() && !known.contains_key(&b.join("::")) {
                    b.pop();
                }
                refs.insert(b.join("::"));
            }
            None => {}
        }
    }
    refs.remove(module);
    refs
}

/// Circles between files of one crate. A module reaching into its own ancestors (a child
/// using its parent's types) is nesting, not a circle, and is left out.
fn circles(src: &Path) -> Vec<Vec<String>> {
    let known = modules(src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        let targets = references(module, &text, &known)
            .into_iter()
            .filter(|t| !(t.is_empty() || module == t || module.starts_with(&format!("{t}::"))))
            .collect();
        edges.insert(module.clone(), targets);
    }
    // Tarjan's strongly connected components.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.edges.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.out
}

#[test]
fn no_import_circles_outside_planner() {
    let mut found = Vec::new();
    for c in workspace() {
        if c.name == "planner" {
            continue;
        }
        for circle in circles(&c.src) {
            found.push(format!("{}: {}", c.name, circle.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_circle_finder_finds_circles() {
    // The finder itself, on a crate written here: a <-> b is a circle; c using its parent is not.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a; mod b;").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::Thing; // crate::c\n").unwrap();
    std::fs::write(
        src.join("b/mod.rs"),
        "mod c; pub struct Thing; fn f() { super::a::g() }",
    )
    .unwrap();
    std::fs::write(src.join("b/c.rs"), "use super::Thing;").unwrap();
    assert_eq!(circles(src), vec![vec!["a".to_string(), "b".to_string()]]);
    std::fs::write(src.join("b/mod.rs"), "mod c; pub struct Thing;").unwrap();
    assert!(circles(src).is_empty());
    std::fs::write(src.join("a.rs"), "use crate::b::{c::Deep};").unwrap();
    std::fs::write(src.join("b/c.rs"), "fn f() { crate::a::g() }").unwrap();
    assert_eq!(
        circles(src),
        vec![vec!["a".to_string(), "b::c".to_string()]]
    );
}

#[test]
fn no_crate_holds_more_than_35_percent_of_the_lines() {
    let mut lines = BTreeMap::new();
    for c in workspace() {
        let count: usize = modules(&c.src)
            .values()
            .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
            .sum();
        lines.insert(c.name, count);
    }
    let total: usize = lines.values().sum();
    for (name, count) in &lines {
        let share = *count as f64 / total as f64;
        assert!(
            share <= 0.35,
            "{name} holds {:.0} % of {total} lines ({count}): split it",
            share * 100.0
        );
    }
}
