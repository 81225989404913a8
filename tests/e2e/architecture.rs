//! The architecture, checked by reading `src/` (in the spirit of
//! rust-analyzer's tidy tests): the layering rules of ARCHITECTURE.md
//! ("Architecture invariants"), no import circle between files, a `//!`
//! doc at the top of every file, no file over 450 lines outside its test
//! module, and a call site for every declared metric.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines a src file may have outside its `#[cfg(test)]` module.
const MAX_CODE_LINES: usize = 450;

/// `(importer, forbidden)`: a module under `importer` never imports a
/// module under any of `forbidden`.
const RULES: &[(&str, &[&str])] = &[
    ("feishu", &["bridge", "outbound", "inbound", "supervisor", "cli"]),
    ("bridge", &["feishu::conn", "feishu::api", "outbound", "inbound", "supervisor", "cli"]),
    ("render", &["bridge", "feishu", "outbound", "inbound", "supervisor", "cli", "metrics"]),
    ("outbound", &["feishu::conn", "inbound", "supervisor", "cli"]),
    ("inbound", &["supervisor", "cli"]),
    ("supervisor", &["cli"]),
];

/// Leaves: they import nothing of the crate but these.
const LEAVES: &[(&str, &[&str])] = &[
    ("channel", &[]),
    ("clock", &[]),
    ("config", &[]),
    ("logging", &["clock"]),
    ("systemd", &[]),
    ("metrics", &["clock", "panics"]),
    ("panics", &[]),
];

struct File {
    path: PathBuf,
    /// The text before the test module.
    code: String,
    text: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` but `main.rs`, by module path.
fn files() -> BTreeMap<String, File> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src()).unwrap().with_extension("");
            let mut parts: Vec<String> =
                rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if parts == ["main"] {
                continue;
            }
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Code before the test module, without comment lines.
            let code = text
                .split("#[cfg(test)]")
                .next()
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts.join("::"), File { path: p, code, text });
        }
    }
    out
}

/// The paths a file's code names with `crate::` or `super::`, resolved to
/// absolute module paths (with any item names still attached).
fn named_paths(module: &str, code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let path_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let starts = (rest.starts_with("crate::") || rest.starts_with("super::"))
            && (i == 0 || !path_char(bytes[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && path_char(bytes[j]) {
            j += 1;
        }
        let path = code[i..j].trim_end_matches(':').to_owned();
        let mut heads = vec![path.clone()];
        if code[j..].starts_with('{') {
            let end = code[j..].find('}').map_or(code.len(), |e| j + e);
            heads = code[j + 1..end]
                .split(',')
                .map(|s| s.trim().split([' ', '{']).next().unwrap_or("").to_owned())
                .filter(|s| !s.is_empty())
                .map(|s| if s == "self" { path.clone() } else { format!("{path}::{s}") })
                .collect();
        }
        for h in heads {
            out.push(resolve(module, &h));
        }
        i = j;
    }
    out
}

fn resolve(module: &str, path: &str) -> String {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    if segs.first() == Some(&"crate") {
        segs.remove(0);
        return segs.join("::");
    }
    // `super` from `a/b.rs` (module a::b) is `a`; from `a/b/mod.rs` too.
    let mut base: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    while segs.first() == Some(&"super") {
        segs.remove(0);
        base.pop();
    }
    base.extend(segs);
    base.join("::")
}

/// The longest module of `mods` that `path` starts with.
fn module_of<'a>(mods: &'a BTreeSet<String>, path: &str) -> Option<&'a str> {
    let mut segs: Vec<&str> = path.split("::").collect();
    while !segs.is_empty() {
        let m = segs.join("::");
        if let Some(found) = mods.get(&m) {
            return Some(found);
        }
        segs.pop();
    }
    None
}

fn under(module: &str, prefix: &str) -> bool {
    module == prefix || module.starts_with(&format!("{prefix}::"))
}

/// File → the other files it imports (ancestors excluded: a file may use
/// its own folder's `mod.rs` items).
fn graph(files: &BTreeMap<String, File>) -> BTreeMap<String, BTreeSet<String>> {
    let mods: BTreeSet<String> = files.keys().filter(|k| !k.is_empty()).cloned().collect();
    files
        .iter()
        .map(|(m, f)| {
            let deps = named_paths(m, &f.code)
                .iter()
                .filter_map(|p| module_of(&mods, p))
                .filter(|d| *d != m && !under(m, d))
                .map(str::to_owned)
                .collect();
            (m.clone(), deps)
        })
        .collect()
}

#[test]
fn imports_follow_the_layering_rules() {
    let g = graph(&files());
    let mut broken = Vec::new();
    for (m, deps) in &g {
        for (importer, forbidden) in RULES {
            if !under(m, importer) {
                continue;
            }
            for d in deps {
                if forbidden.iter().any(|f| under(d, f)) {
                    broken.push(format!("{m} imports {d}"));
                }
            }
        }
        for (leaf, allowed) in LEAVES {
            if m == leaf {
                for d in deps {
                    if !allowed.iter().any(|a| under(d, a)) {
                        broken.push(format!("leaf {m} imports {d}"));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layering rules broken (see ARCHITECTURE.md):\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_import_circles_between_files() {
    let g = graph(&files());
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(cycle) = visit(n, &g, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn every_file_opens_with_its_doc() {
    let missing: Vec<String> = files()
        .values()
        .filter(|f| !f.text.trim_start().starts_with("//!"))
        .map(|f| f.path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc: {missing:?}");
}

/// Lines outside the `#[cfg(test)]` module (counted like `modgraph.py`).
fn code_lines(text: &str) -> usize {
    let mut n = 0;
    let (mut skipping, mut depth, mut started) = (false, 0i64, false);
    for line in text.lines() {
        if !skipping && line.trim_start().starts_with("#[cfg(test)]") {
            (skipping, depth, started) = (true, 0, false);
            continue;
        }
        if skipping {
            depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            started |= line.contains('{');
            if started && depth <= 0 {
                skipping = false;
            }
            continue;
        }
        n += 1;
    }
    n
}

#[test]
fn no_file_passes_450_lines_outside_its_tests() {
    let long: Vec<String> = files()
        .values()
        .map(|f| (f, code_lines(&f.text)))
        .filter(|(_, n)| *n > MAX_CODE_LINES)
        .map(|(f, n)| format!("{} ({n} lines)", f.path.display()))
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

#[test]
fn every_declared_metric_has_a_call_site() {
    let files = files();
    let decl = &files["metrics"].code;
    let consts: Vec<&str> = decl
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(consts.len() >= 10, "metric constants not found: {consts:?}");
    let mut unused = Vec::new();
    for c in &consts {
        let elsewhere = files
            .iter()
            .filter(|(m, _)| *m != "metrics")
            .any(|(_, f)| f.code.contains(&format!("metrics::{c}")));
        // The registry's own gauges are fed inside metrics.rs (frame_seen, main_loop_alive).
        let own = words(decl).filter(|w| w == c).count() > 2;
        if !elsewhere && !own {
            unused.push(*c);
        }
    }
    assert!(unused.is_empty(), "declared metrics nothing updates: {unused:?}");
}

#[test]
fn the_checker_reads_imports_as_rustc_does() {
    // The rules are only as good as the parser: check it on literals.
    let code = "use crate::outbound::TypingJob;\nuse super::super::{event, frame::Frame};\nfn f() { crate::metrics::inc(x) }";
    let paths = named_paths("feishu::conn::session", code);
    assert_eq!(
        paths,
        ["outbound::TypingJob", "feishu::event", "feishu::frame::Frame", "metrics::inc"]
    );
    assert_eq!(resolve("outbound::pop", "super::Job"), "outbound::Job");
    assert_eq!(resolve("outbound", "super::clock"), "clock");
    let mods: BTreeSet<String> = ["feishu", "feishu::event", "outbound"].map(String::from).into();
    assert_eq!(module_of(&mods, "feishu::event::Message"), Some("feishu::event"));
    assert_eq!(module_of(&mods, "feishu::http::Http"), Some("feishu"));
    assert_eq!(code_lines("a\n#[cfg(test)]\nmod tests {\n  fn x() {}\n}\nb\n"), 2);
}
