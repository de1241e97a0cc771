//! The module layering of `src/`, checked from the parsed source: no import cycle between
//! modules, and the pure core (`config`, `k8s`, `mutate`) imports nothing but the core: not the
//! wire format (`admission`), the adapters (`validating`, `mutating`, `check`) or the shell.
//!
//! A module is a file (`src/config/validate.rs` is `config::validate`) or an inline `mod`. Every
//! file is parsed with `syn`; what is compiled for tests only (`#[cfg(test)]` items wherever they
//! stand, and files declared by a `#[cfg(test)] mod`) is left out, everything else is read. An
//! import is any path that names a module of the crate: `use` trees (braces, `self`, globs,
//! renames, `pub use`), paths in expressions, types, patterns and attributes, and paths inside
//! macro invocations, each resolved from `crate::`, `super::`, `self::` or a child module's name
//! to the longest module it names. Tests may reach across layers; production code may not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Top-level modules of the pure core; it may import only these.
const CORE: &[&str] = &["config", "k8s", "mutate"];

/// `src/config/validate.rs` → `config::validate`; `src/config/mod.rs` → `config`.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> =
        relative.with_extension("").iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|last| last == "mod" || last == "lib" || last == "main") {
        parts.pop();
    }
    parts.join("::")
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let relative = path.strip_prefix(root).unwrap_or(&path);
            // The crate root of the binary is not part of the library's layering.
            if relative != Path::new("main.rs") {
                out.insert(module_of(relative), text);
            }
        }
    }
}

/// `#[cfg(test)]`: compiled for tests only.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| attr.path().is_ident("cfg") && attr.parse_args::<syn::Ident>().is_ok_and(|ident| ident == "test"))
}

/// One file's production code: the paths it uses (each as its segments, with the module it is
/// written in), the modules it declares inline, and the file modules it declares for tests only.
#[derive(Default)]
struct Reader {
    /// The module the visitor stands in (a file's module, then inline `mod`s).
    at: Vec<String>,
    paths: Vec<(String, Vec<String>)>,
    inline: BTreeSet<String>,
    test_files: BTreeSet<String>,
    /// Files declared by a private `mod x;`: parts of the module that declares them.
    private_files: BTreeSet<String>,
    /// The paths of glob imports (`use crate::x::*`), whose names are in scope unqualified.
    globs: Vec<(String, Vec<String>)>,
}

impl Reader {
    fn here(&self) -> String {
        self.at.join("::")
    }

    fn path(&mut self, segments: Vec<String>) {
        if !segments.is_empty() {
            let here = self.here();
            self.paths.push((here, segments));
        }
    }

    /// A `use` tree, expanded: `a::{self, b::{c, d}, e as f, g::*}` gives `a`, `a::b::c`,
    /// `a::b::d`, `a::e` and `a::g`.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) if name.ident == "self" => self.path(prefix.clone()),
            syn::UseTree::Name(name) => self.path([prefix.as_slice(), &[name.ident.to_string()]].concat()),
            syn::UseTree::Rename(rename) if rename.ident == "self" => self.path(prefix.clone()),
            syn::UseTree::Rename(rename) => self.path([prefix.as_slice(), &[rename.ident.to_string()]].concat()),
            syn::UseTree::Glob(_) => {
                let here = self.here();
                self.globs.push((here, prefix.clone()));
                self.path(prefix.clone());
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Paths inside a macro's tokens, which syn does not parse: every `a::b::c` run of
    /// identifiers, and `use`-like braces after `::`.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut at = 0;
        while at < trees.len() {
            match &trees[at] {
                TokenTree::Group(group) => {
                    self.tokens(group.stream());
                    at += 1;
                }
                TokenTree::Ident(ident) => {
                    let mut segments = vec![ident.to_string()];
                    let mut next = at + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                        (trees.get(next), trees.get(next + 1))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        match trees.get(next + 2) {
                            Some(TokenTree::Ident(ident)) => {
                                segments.push(ident.to_string());
                                next += 3;
                            }
                            Some(TokenTree::Group(group)) => {
                                if let Ok(tree) = syn::parse2::<syn::UseTree>(group.stream()) {
                                    self.use_tree(&mut segments.clone(), &tree);
                                }
                                next += 3;
                                break;
                            }
                            _ => break,
                        }
                    }
                    // `$crate::x` comes from another crate's macro; `r#crate` is no keyword.
                    let after_dollar = at > 0 && matches!(&trees[at - 1], TokenTree::Punct(p) if p.as_char() == '$');
                    if segments.len() > 1 && !after_dollar {
                        self.path(segments);
                    }
                    at = next;
                }
                TokenTree::Punct(_) | TokenTree::Literal(_) => at += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Reader {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::ExternCrate(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::ForeignMod(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::TraitAlias(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Union(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if test_only(attrs) {
            if let syn::Item::Mod(module) = item {
                if module.content.is_none() {
                    let child = [self.at.as_slice(), &[module.ident.to_string()]].concat().join("::");
                    self.test_files.insert(child);
                }
            }
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => return syn::visit::visit_impl_item(self, item),
        };
        if !test_only(attrs) {
            syn::visit::visit_impl_item(self, item);
        }
    }

    fn visit_stmt(&mut self, stmt: &'ast syn::Stmt) {
        let test = match stmt {
            syn::Stmt::Local(local) => test_only(&local.attrs),
            syn::Stmt::Macro(mac) => test_only(&mac.attrs),
            _ => false,
        };
        if !test {
            syn::visit::visit_stmt(self, stmt);
        }
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        // `mod x;` declares a file, read on its own; `mod x { … }` is read here, as module `x`.
        if module.content.is_none() {
            if matches!(module.vis, syn::Visibility::Inherited) {
                let child = [self.at.as_slice(), &[module.ident.to_string()]].concat().join("::");
                self.private_files.insert(child);
            }
        } else {
            self.at.push(module.ident.to_string());
            self.inline.insert(self.here());
            syn::visit::visit_item_mod(self, module);
            self.at.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    /// `pub(super)`, `pub(in crate::x)`: who may see an item, not an import.
    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.path(path.segments.iter().map(|segment| segment.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }

    fn visit_meta_list(&mut self, list: &'ast syn::MetaList) {
        self.tokens(list.tokens.clone());
        syn::visit::visit_meta_list(self, list);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The module a path names: its longest prefix that is a module. A path starts at the crate
/// (`crate::`), at a parent (`super::`, repeated), at the module itself (`self::`), or at a
/// child module of it or of a module it glob-imports (`child::x`, `globbed`); any other path
/// names another crate or a local item.
fn resolve(from: &str, segments: &[String], modules: &BTreeSet<String>) -> Option<String> {
    resolve_in(from, segments, modules, &[])
}

fn resolve_in(from: &str, segments: &[String], modules: &BTreeSet<String>, globbed: &[String]) -> Option<String> {
    if let Some(first) = segments.first().filter(|first| !["crate", "super", "self"].contains(&first.as_str())) {
        let child = |parent: &str| if parent.is_empty() { first.clone() } else { format!("{parent}::{first}") };
        if let Some(parent) = globbed.iter().find(|parent| modules.contains(&child(parent))) {
            let mut absolute = vec!["crate".to_owned()];
            absolute.extend(parent.split("::").filter(|s| !s.is_empty()).map(str::to_owned));
            absolute.extend(segments.iter().cloned());
            return resolve_in(from, &absolute, modules, &[]);
        }
    }
    let mut parts: Vec<&str> = if from.is_empty() { Vec::new() } else { from.split("::").collect() };
    let mut rest = segments.iter().map(String::as_str).peekable();
    match rest.peek().copied() {
        Some("crate") => {
            parts.clear();
            rest.next();
        }
        Some("super") => {
            while rest.next_if_eq(&"super").is_some() {
                parts.pop()?;
            }
        }
        Some("self") => {
            rest.next();
        }
        Some(first) if modules.contains(&[parts.as_slice(), &[first]].concat().join("::")) => {}
        _ => return None,
    }
    parts.extend(rest);
    (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|candidate| modules.contains(candidate))
}

/// What the source says: every module's imports of other modules, and the files that are parts
/// of the module declaring them (a private `mod x;`).
struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    private_files: BTreeSet<String>,
}

/// The graph of a crate, from the text of each module file.
fn graph_of(files: &BTreeMap<String, String>) -> Graph {
    let mut readers = BTreeMap::new();
    let mut modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut test_files = BTreeSet::new();
    let mut private_files = BTreeSet::new();
    for (module, text) in files {
        let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{module}: {e}"));
        let mut reader = Reader {
            at: module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            ..Reader::default()
        };
        reader.visit_file(&file);
        modules.extend(reader.inline.iter().cloned());
        test_files.extend(reader.test_files.iter().cloned());
        private_files.extend(reader.private_files.iter().cloned());
        readers.insert(module.clone(), reader);
    }
    // A file declared for tests only, and whatever it declares in turn, is test code.
    let test_code = |module: &str| test_files.iter().any(|t| module == t || module.starts_with(&format!("{t}::")));
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, reader) in &readers {
        if test_code(file) {
            continue;
        }
        edges.entry(file.clone()).or_default();
        for inline in &reader.inline {
            edges.entry(inline.clone()).or_default();
        }
        let globbed = |from: &str| -> Vec<String> {
            let mut scope = vec![from.to_owned()];
            scope.extend(reader.globs.iter().filter(|(at, _)| at == from).filter_map(|(at, path)| {
                // A glob of the crate root resolves to no module; it is the root, "".
                let all_super_or_crate = path.iter().all(|s| s == "super" || s == "crate");
                resolve(at, path, &modules).or_else(|| all_super_or_crate.then(String::new))
            }));
            scope
        };
        for (from, segments) in &reader.paths {
            let Some(target) = resolve_in(from, segments, &modules, &globbed(from)) else { continue };
            if &target != from && !target.is_empty() && !test_code(&target) {
                edges.entry(from.clone()).or_default().insert(target);
            }
        }
    }
    private_files.retain(|file| !test_code(file));
    Graph { edges, private_files }
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&src, &src, &mut files);
    graph_of(&files)
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// The cycles of a graph, each as the modules of one strongly connected component.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(node) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = edges.keys().map(|m| (m, reaches(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for module in edges.keys() {
        if done.contains(module) || !reach[module].contains(module) {
            continue;
        }
        let component: Vec<String> = edges
            .keys()
            .filter(|other| reach[module].contains(*other) && reach.get(*other).is_some_and(|r| r.contains(module)))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        found.push(component);
    }
    found
}

/// The cycles between modules, and between top-level modules. A file declared by a private
/// `mod x;` is a part of the module that declares it (`config::manifest` and its readers), so
/// the two count as one module here.
fn cycle_problems(graph: &Graph) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let unit = |module: &str| {
        let mut module = module.to_owned();
        while graph.private_files.contains(&module) {
            module = module.rsplit_once("::").map_or(String::new(), |(parent, _)| parent.to_owned());
        }
        module
    };
    let mut units: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in &graph.edges {
        let from = unit(module);
        let entry = units.entry(from.clone()).or_default();
        entry.extend(targets.iter().map(|t| unit(t)).filter(|t| *t != from));
    }
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in &units {
        let entry = tops.entry(top(module).to_owned()).or_default();
        entry.extend(targets.iter().map(|t| top(t).to_owned()).filter(|t| t != top(module)));
    }
    (cycles(&units), cycles(&tops))
}

/// Every import of a module outside the core by a module of the core.
fn core_problems(graph: &Graph) -> Vec<String> {
    let mut problems = Vec::new();
    for (module, targets) in &graph.edges {
        if !CORE.contains(&top(module)) {
            continue;
        }
        for target in targets.iter().filter(|t| !CORE.contains(&top(t))) {
            problems.push(format!("{module} imports {target}"));
        }
    }
    problems
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = graph();
    let (by_module, by_top) = cycle_problems(&graph);
    assert!(
        by_module.is_empty() && by_top.is_empty(),
        "import cycles between modules: {by_module:?}\nbetween top-level modules: {by_top:?}\nedges: {:#?}",
        graph.edges
    );
}

#[test]
fn the_core_imports_only_the_core() {
    let graph = graph();
    for core in CORE {
        assert!(graph.edges.contains_key(*core), "{core} was read");
    }
    let problems = core_problems(&graph);
    assert!(problems.is_empty(), "the core imports the wire format, an adapter or the shell:\n{}", problems.join("\n"));
}

/// A crate in miniature: the core (`config` with `config::model` and `config::validate`) and
/// the shell (`server` with `server::state`, `metrics`), plus `planted` in `config::validate`.
fn crate_with(planted: &str) -> BTreeMap<String, String> {
    [
        ("", "pub mod config;\npub mod metrics;\npub mod server;"),
        ("config", "pub mod model;\npub mod validate;\nuse model::Config;"),
        ("config::model", "pub struct Config;"),
        ("config::validate", planted),
        ("metrics", "pub struct Metrics;\npub fn record() {}"),
        ("server", "pub mod state;"),
        ("server::state", "use crate::config::validate;\npub struct AppState;"),
    ]
    .into_iter()
    .map(|(module, text)| (module.to_owned(), text.to_owned()))
    .collect()
}

/// Each import form, planted in the core: every one must be seen, and the same code under
/// `#[cfg(test)]` must not be.
#[test]
fn every_import_form_planted_in_the_core_is_found() {
    let forms = [
        ("a use of a path", "use crate::server::state::AppState;"),
        ("crate::{…}", "use crate::{config::model, server};"),
        ("nested braces with self", "use crate::{server::{self, state::AppState}};"),
        ("super::super", "use super::super::metrics::Metrics;"),
        ("super::{…}", "use super::{model::Config, super::metrics};"),
        ("a glob", "use crate::metrics::*;"),
        ("a rename", "use crate::metrics as m;"),
        ("a rename of self", "use crate::metrics::{self as m};"),
        ("a re-export", "pub use crate::server::state::AppState;"),
        ("a path in an expression", "pub fn f() { crate::metrics::record() }"),
        ("a path in a type", "pub fn f(_: &crate::server::state::AppState) {}"),
        ("a path in a pattern", "pub fn f(x: u8) { match x { crate::metrics::LIMIT => {}, _ => {} } }"),
        ("a trait path in an impl", "pub struct A;\nimpl crate::metrics::Record for A {}"),
        ("a path in a macro", "pub fn f() { tracing::info!(\"{:?}\", crate::metrics::Metrics); }"),
        ("braces in a macro", "pub fn f() { m!(crate::metrics::{record, Metrics}); }"),
        ("a path in an attribute", "#[derive(crate::metrics::Encode)]\npub struct A;"),
        ("a use inside a function", "pub fn f() { use crate::metrics::record; record() }"),
        ("an inline module", "mod inner { use crate::metrics::Metrics; }"),
        ("a use after a test module", "#[cfg(test)]\nmod tests {}\nuse crate::metrics::Metrics;"),
        ("a glob of the crate root, then a bare path", "use super::super::*;\npub fn f() { metrics::record() }"),
    ];
    let clean = crate_with("use super::model::Config;");
    assert_eq!(core_problems(&graph_of(&clean)), Vec::<String>::new(), "the miniature crate is clean");
    for (form, planted) in forms {
        let problems = core_problems(&graph_of(&crate_with(planted)));
        assert!(!problems.is_empty(), "{form}: {planted:?} was not found");
        assert!(problems.iter().all(|p| p.starts_with("config::validate")), "{form}: {problems:?}");
        let under_test = format!("#[cfg(test)]\nmod tests {{\n{planted}\n}}");
        assert_eq!(core_problems(&graph_of(&crate_with(&under_test))), Vec::<String>::new(), "{form} in tests");
    }
    // A file declared for tests only is test code.
    let mut files = crate_with("#[cfg(test)]\nmod tests;");
    files.insert("config::validate::tests".to_owned(), "use crate::server::state::AppState;".to_owned());
    assert_eq!(core_problems(&graph_of(&files)), Vec::<String>::new());
    // A cycle is found through any of the forms, and a private file is a part of its parent.
    let mut files = crate_with("mod part;\nuse part::X;");
    files.insert("config::validate::part".to_owned(), "pub struct X;\nuse super::Y;".to_owned());
    assert_eq!(cycle_problems(&graph_of(&files)), (vec![], vec![]));
    files.insert("config::validate".to_owned(), "pub mod part;\nuse part::X;".to_owned());
    assert_eq!(cycle_problems(&graph_of(&files)).0.len(), 1, "a public file is a module of its own");
    let (by_module, _) = cycle_problems(&graph_of(&crate_with("use crate::server::{state};")));
    assert_eq!(by_module, [vec!["config::validate".to_owned(), "server::state".to_owned()]]);
}

#[test]
fn paths_resolve_from_where_they_are_written() {
    let modules: BTreeSet<String> = ["m", "m::f", "m::g", "h"].map(str::to_owned).into();
    let path = |text: &str| text.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(resolve("m::g", &path("super::f::x"), &modules), Some("m::f".to_owned()));
    assert_eq!(resolve("m", &path("super::h"), &modules), Some("h".to_owned()));
    assert_eq!(resolve("m::g", &path("crate::h::i"), &modules), Some("h".to_owned()));
    assert_eq!(resolve("m", &path("f::x"), &modules), Some("m::f".to_owned()), "a child module");
    assert_eq!(resolve("m", &path("self::g"), &modules), Some("m::g".to_owned()));
    assert_eq!(resolve("", &path("h::i"), &modules), Some("h".to_owned()), "from the crate root");
    assert_eq!(resolve("m::g", &path("h::i"), &modules), None, "another crate named like a module");
    assert_eq!(resolve("m", &path("super::super::h"), &modules), None, "above the crate root");
}
