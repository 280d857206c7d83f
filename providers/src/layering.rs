//! The modules of this crate import one another without a cycle (a test).
//!
//! Reads every source file under `src/`, takes the paths each one names through `crate::`,
//! `super::` and `self::` (in `use` declarations, groups expanded, and in code) and the submodules
//! it declares, and builds the graph of which module imports which: one node per file, the
//! configuration (`config/`) one node, the crate root (`lib.rs`) one more. A path to an item of the
//! root (`crate::Manifest`) is an edge to the root, which declares every module: a cycle, so
//! modules name items by the module that defines them. Comments (doc links included) and string
//! literals are left out.
//!
//! [`KNOWN`] lists the edges not counted yet, each with the change that removes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges (importer, imported) the cycle check leaves out for now. Each is one line, to delete when
/// its importer stops using it; the test fails while an edge listed here is not in the graph.
const KNOWN: &[(&str, &str)] = &[];

/// Which module imports which, and through what path.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The module of a source file, relative to `src/`: `certificates.rs` is `certificates`,
/// `istio/mod.rs` is `istio`, `lib.rs` is `crate`.
fn module_of(relative: &Path) -> String {
    let mut segments: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segments.last().is_some_and(|s| s == "mod") {
        segments.pop();
    }
    if segments == ["lib"] {
        return "crate".into();
    }
    segments.join("::")
}

/// The graph node of a module: the configuration's modules are one.
fn node(module: &str) -> String {
    if module == "config" || module.starts_with("config::") {
        "config".into()
    } else {
        module.into()
    }
}

/// The source with comments, string literals and character literals blanked out.
fn code(source: &str) -> String {
    let s: Vec<char> = source.chars().collect();
    let at = |i: usize| s.get(i).copied().unwrap_or(' ');
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    // How many `#` a raw string opening at `i` (`r"`, `r#"`, `br"`, …) has.
    let raw = |i: usize| {
        if i > 0 && ident(s[i - 1]) {
            return None;
        }
        let mut k = match (at(i), at(i + 1)) {
            ('r', _) => i + 1,
            ('b', 'r') => i + 2,
            _ => return None,
        };
        let opening = k;
        while at(k) == '#' {
            k += 1;
        }
        (at(k) == '"').then_some((k + 1, k - opening))
    };
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < s.len() {
        let end = if at(i) == '/' && at(i + 1) == '/' {
            (i..s.len()).find(|&k| s[k] == '\n').unwrap_or(s.len())
        } else if at(i) == '/' && at(i + 1) == '*' {
            let (mut k, mut depth) = (i, 0);
            loop {
                match (at(k), at(k + 1)) {
                    ('/', '*') => (k, depth) = (k + 2, depth + 1),
                    ('*', '/') => (k, depth) = (k + 2, depth - 1),
                    _ => k += 1,
                }
                if depth == 0 || k >= s.len() {
                    break k;
                }
            }
        } else if let Some((mut k, hashes)) = raw(i) {
            while k < s.len() && !(at(k) == '"' && (1..=hashes).all(|h| at(k + h) == '#')) {
                k += 1;
            }
            k + 1 + hashes
        } else if at(i) == '"' {
            let mut k = i + 1;
            while k < s.len() && s[k] != '"' {
                k += if s[k] == '\\' { 2 } else { 1 };
            }
            k + 1
        } else if at(i) == '\'' && at(i + 1) == '\\' {
            (i + 2..s.len()).find(|&k| s[k] == '\'').unwrap_or(s.len()) + 1
        } else if at(i) == '\'' && at(i + 2) == '\'' {
            i + 3
        } else {
            out.push(s[i]);
            i += 1;
            continue;
        };
        out.push(' ');
        i = end;
    }
    out
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let s: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                i += 1;
            }
            out.push(s[start..i].iter().collect());
        } else if c == ':' && s.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// The paths of the `use` tree starting at `t[*i]`, each prefixed by `prefix`.
fn use_tree(t: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while let Some(tok) = t.get(*i) {
        *i += 1;
        match tok.as_str() {
            "::" => {}
            "{" => {
                while t.get(*i).is_some_and(|x| x != "}") {
                    use_tree(t, i, path.clone(), out);
                    if t.get(*i).is_some_and(|x| x == ",") {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "*" => break,
            "as" => {
                *i += 1;
                break;
            }
            "," | "}" | ";" => {
                *i -= 1;
                break;
            }
            name => path.push(name.to_string()),
        }
    }
    out.push(path);
}

/// The module a path names (the longest prefix that is a module of `modules`; else the root),
/// for a path written in module `at` (its segments, inline modules included).
fn target(path: &[String], at: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut absolute: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => vec![],
        Some("super") | Some("self") => at.to_vec(),
        _ => return None,
    };
    for (k, segment) in path.iter().enumerate() {
        match segment.as_str() {
            "crate" if k == 0 => {}
            "self" => {}
            "super" => {
                absolute.pop();
            }
            s => absolute.push(s.to_string()),
        }
    }
    (0..=absolute.len())
        .rev()
        .map(|n| absolute[..n].join("::"))
        .find(|m| modules.contains(m))
        .or(Some("crate".into()))
}

/// The import graph of `files` (module, source).
fn graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut g = Graph::new();
    for (module, source) in files {
        let from = node(module);
        g.entry(from.clone()).or_default();
        let t = tokens(&code(source));
        let file: Vec<String> = if module == "crate" {
            vec![]
        } else {
            module.split("::").map(str::to_string).collect()
        };
        // Inline modules (`mod tests { … }`) open at a brace depth.
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        while i < t.len() {
            let at: Vec<String> = file
                .iter()
                .cloned()
                .chain(inline.iter().map(|(n, _)| n.clone()))
                .collect();
            let mut paths: Vec<Vec<String>> = Vec::new();
            match t[i].as_str() {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if inline.last().is_some_and(|(_, d)| *d == depth) {
                        inline.pop();
                    }
                }
                "mod" if t.get(i + 2).is_some_and(|x| x == "{") => {
                    inline.push((t[i + 1].clone(), depth));
                }
                "mod" if t.get(i + 2).is_some_and(|x| x == ";") => {
                    paths.push(vec!["self".into(), t[i + 1].clone()]);
                }
                "use" => {
                    i += 1;
                    let mut found = Vec::new();
                    use_tree(&t, &mut i, vec![], &mut found);
                    paths.extend(found);
                }
                "crate" | "super" | "self" if t.get(i + 1).is_some_and(|x| x == "::") => {
                    let mut path = vec![t[i].clone()];
                    while t.get(i + 1).is_some_and(|x| x == "::")
                        && t.get(i + 2)
                            .is_some_and(|x| x.starts_with(char::is_alphabetic))
                    {
                        path.push(t[i + 2].clone());
                        i += 2;
                    }
                    paths.push(path);
                }
                _ => {}
            }
            for path in paths {
                if let Some(to) = target(&path, &at, &modules).map(|m| node(&m))
                    && to != from
                {
                    g.entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_default()
                        .insert(path.join("::"));
                }
            }
            i += 1;
        }
    }
    g
}

/// A cycle through `start`, if there is one: its nodes, `start` first.
fn cycle_through(g: &Graph, start: &str) -> Option<Vec<String>> {
    // Breadth first, for the shortest.
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(n) = queue.pop_front() {
        for next in g.get(&n).into_iter().flat_map(BTreeMap::keys) {
            if next == start {
                let mut path = vec![n.clone()];
                while let Some(p) = came_from.get(path.last()?) {
                    path.push(p.clone());
                }
                path.reverse();
                return Some(path);
            }
            if !came_from.contains_key(next) && next != start {
                came_from.insert(next.clone(), n.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

/// Every cycle of `g`, one per set of modules that import one another: its modules, in order.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for start in g.keys() {
        if !seen.contains(start)
            && let Some(cycle) = cycle_through(g, start)
        {
            seen.extend(cycle.iter().cloned());
            out.push(cycle);
        }
    }
    out
}

/// A cycle as `a -> b (the paths a names b by) -> a (…)`.
fn describe(g: &Graph, cycle: &[String]) -> String {
    let mut text = cycle[0].clone();
    for (k, from) in cycle.iter().enumerate() {
        let to = cycle.get(k + 1).unwrap_or(&cycle[0]);
        let via: Vec<&str> = g[from][to].iter().map(String::as_str).collect();
        text.push_str(&format!(" -> {to} ({})", via.join(", ")));
    }
    text
}

/// Every `.rs` file under `dir`, as (module, source).
fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("under src/");
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            out.push((module_of(relative), text));
        }
    }
}

#[test]
fn modules_import_one_another_without_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let mut g = graph(&files);
    // The graph is read at all: a module every provider imports, seen from two of them.
    for from in ["certificates", "istio::control_plane"] {
        assert!(g[from].contains_key("manifest"), "{from}: {:?}", g[from]);
    }
    for (from, to) in KNOWN {
        let listed = g.get_mut(*from).and_then(|edges| edges.remove(*to));
        assert!(
            listed.is_some(),
            "{from} no longer imports {to}: remove ({from:?}, {to:?}) from KNOWN in {}",
            file!()
        );
    }
    for (from, edges) in &g {
        let to: Vec<&str> = edges.keys().map(String::as_str).collect();
        println!("{from} -> {}", to.join(", "));
    }
    let found: Vec<String> = cycles(&g).iter().map(|c| describe(&g, c)).collect();
    assert!(
        found.is_empty(),
        "modules that import one another (move what they share to a base module, such as \
         `names`):\n{}",
        found.join("\n")
    );
}

#[test]
fn a_cycle_is_found_through_use_groups_super_and_paths_in_code() {
    let files = |sources: &[(&str, &str)]| -> Vec<(String, String)> {
        sources
            .iter()
            .map(|(m, s)| (m.to_string(), s.to_string()))
            .collect()
    };
    let acyclic = files(&[
        ("crate", "pub mod a;\npub mod b;\n#[cfg(test)]\nmod t;"),
        (
            "a",
            "//! [`crate::b`]\nuse crate::{b::{self, X as Y}, c};\n",
        ),
        (
            "b",
            "const S: &str = \"crate::a::X\";\nmod tests { use super::*; }",
        ),
        ("c", "pub mod d;\nfn f() { d::g() }"),
        ("c::d", "fn g() { let _ = r#\"super::X\"#; let _ = '\"'; }"),
        ("t", ""),
    ]);
    assert!(cycles(&graph(&acyclic)).is_empty(), "{:?}", graph(&acyclic));
    assert!(graph(&acyclic)["a"].contains_key("c"));
    for (module, source, cycle) in [
        ("b", "fn f() { crate::a::g() }", &["a", "b"][..]),
        ("c::d", "use super::super::a::Z;", &["a", "c", "c::d"]),
        ("b", "use crate::Step;", &["a", "b", "crate"]),
    ] {
        let mut changed = acyclic.clone();
        changed.retain(|(m, _)| m != module);
        changed.push((module.to_string(), source.to_string()));
        let found = cycles(&graph(&changed));
        assert_eq!(found, [cycle], "{module}");
    }
}
