//! Template files (`templates/*.toml`): load, check, upload to the templates table.

use anyhow::{Context as _, bail};
use herald::domain::template::{CompiledTemplate, TemplateDoc};
use std::path::Path;

/// Loads and compiles every `*.toml` in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<CompiledTemplate>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

pub fn load(path: &Path) -> anyhow::Result<CompiledTemplate> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: TemplateDoc =
        toml::from_str(&text).with_context(|| format!("{} is not a valid template", path.display()))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if doc.name.as_str() != stem {
        bail!("{}: the template is named {} but the file {stem}", path.display(), doc.name);
    }
    CompiledTemplate::compile(doc).with_context(|| path.display().to_string())
}

/// Checks every template; returns the problems found, one line each.
pub fn check_all(templates: &[CompiledTemplate]) -> Vec<String> {
    templates.iter().flat_map(|t| t.check().into_iter().map(move |p| format!("{}: {p}", t.name()))).collect()
}
