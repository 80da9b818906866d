//! Template files (`templates/*.toml`): load, check, upload to the templates table,
//! with what is kept beside them (`campaigns/`, `segments/`, `journeys/`, `profile.toml`,
//! `topics.toml`).

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use herald::aws::dynamodb::{DynamoTemplates, Pushed};
use herald::domain::campaign::CampaignDoc;
use herald::domain::profile::ProfileSchema;
use herald::domain::template::{CompiledTemplate, Limits, TemplateDoc};
use std::path::{Path, PathBuf};

/// Every `*.toml` in `dir`, sorted by name; `missing_ok`: a folder that does not exist has none.
pub fn toml_files(dir: &Path, missing_ok: bool) -> anyhow::Result<Vec<PathBuf>> {
    if missing_ok && !dir.exists() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// One TOML document of type `T`; `what` names it in the error ("a template").
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

/// Loads and compiles every `*.toml` in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<CompiledTemplate>> {
    toml_files(dir, false)?.iter().map(|p| load(p)).collect()
}

pub fn load(path: &Path) -> anyhow::Result<CompiledTemplate> {
    let doc: TemplateDoc = read_toml(path, "a valid template")?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if doc.name.as_str() != stem {
        bail!("{}: the template is named {} but the file {stem}", path.display(), doc.name);
    }
    CompiledTemplate::compile(doc).with_context(|| path.display().to_string())
}

/// Checks every template, with the same code that renders them: variables,
/// parts, and sizes against `limits`. Returns the problems found, one line each.
pub fn check_all(templates: &[CompiledTemplate], limits: &Limits) -> Vec<String> {
    templates
        .iter()
        .flat_map(|t| t.check().into_iter().chain(t.check_limits(limits)).map(move |p| format!("{}: {p}", t.name())))
        .collect()
}

/// Checks the profile attributes every template uses against `profile.toml`'s.
pub fn check_profile_all(templates: &[CompiledTemplate], schema: &ProfileSchema) -> Vec<String> {
    templates
        .iter()
        .flat_map(|t| t.check_profile(schema).into_iter().map(move |p| format!("{}: {p}", t.name())))
        .collect()
}

/// Everything `herald templates push` uploads from the folder `templates` and its siblings
/// (`campaigns/`, `segments/`, `journeys/`, `profile.toml`, `topics.toml` when there is one), checked first: nothing is pushed unless it
/// all passes. Returns what was pushed, one line each. The profile schema goes first, so a
/// segment or template never arrives before the attributes it uses are declared.
pub async fn push_all(store: &DynamoTemplates, templates: &Path, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
    let compiled = load_dir(templates)?;
    let campaigns = load_campaigns(&templates.with_file_name("campaigns"))?;
    let (segments, schema, mut problems) =
        crate::segments::check(&templates.with_file_name("segments"), &templates.with_file_name("profile.toml"))?;
    problems.extend(check_profile_all(&compiled, &schema));
    let names = compiled.iter().map(|t| t.name().clone()).collect();
    let (journeys, journey_problems) = crate::journeys::check(&templates.with_file_name("journeys"), &names, &schema)?;
    problems.extend(journey_problems);
    let topics = match crate::preferences::check_topics(&templates.with_file_name("topics.toml"), true)? {
        Ok(topics) => Some(topics).filter(|t| !t.topics.is_empty()),
        Err(topic_problems) => {
            problems.extend(topic_problems);
            None
        }
    };
    if !problems.is_empty() {
        bail!("nothing pushed, {} problem(s):\n{}", problems.len(), problems.join("\n"));
    }
    let mut pushed = Vec::new();
    store.put_profile_schema(&schema, now).await?;
    pushed.push(format!("pushed profile schema ({} attribute(s))", schema.attributes.len()));
    if let Some(topics) = &topics {
        store.put_topics(topics, now).await?;
        pushed.push(format!("pushed topics ({} topic(s))", topics.topics.len()));
    }
    for t in &compiled {
        store.put(&t.doc, now).await?;
        pushed.push(format!("pushed {} v{}", t.doc.name, t.doc.version));
    }
    for c in &campaigns {
        store.put_campaign(c, now).await?;
        pushed.push(format!("pushed campaign {}", c.name));
    }
    for s in &segments {
        let line = match store.put_segment(s, now).await? {
            Pushed::Written => format!("pushed segment {} v{}", s.name, s.version),
            Pushed::Unchanged => format!("segment {} v{} unchanged", s.name, s.version),
        };
        pushed.push(line);
    }
    // After the templates they send.
    for j in &journeys {
        let line = match store.put_journey(j, now).await? {
            Pushed::Written => format!("pushed journey {} v{}", j.name, j.version),
            Pushed::Unchanged => format!("journey {} v{} unchanged", j.name, j.version),
        };
        pushed.push(line);
    }
    Ok(pushed)
}

/// Loads and validates every campaign definition (`campaigns/*.toml`); a missing folder is none.
pub fn load_campaigns(dir: &Path) -> anyhow::Result<Vec<CampaignDoc>> {
    toml_files(dir, true)?
        .iter()
        .map(|p| {
            let doc: CampaignDoc = read_toml(p, "a valid campaign")?;
            doc.validate().map_err(anyhow::Error::msg)?;
            Ok(doc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::repo_root;

    #[test]
    fn every_shipped_template_and_campaign_passes_its_checks() {
        let templates = load_dir(&repo_root().join("templates")).unwrap();
        assert!(templates.iter().any(|t| t.name().as_str() == "order_shipped"));
        let problems = check_all(&templates, &Limits::default());
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(!load_campaigns(&repo_root().join("campaigns")).unwrap().is_empty());
        let schema = crate::segments::load_profile(&repo_root().join("profile.toml")).unwrap();
        assert!(check_profile_all(&templates, &schema).is_empty());
        // Without profile.toml's declarations, the digest's use of first_name is refused.
        assert_eq!(
            check_profile_all(&templates, &ProfileSchema::default()),
            [
                "weekly_digest: en/email/html.html uses recipient.attributes.first_name, which profile.toml does not declare",
                "weekly_digest: en/email/text.txt uses recipient.attributes.first_name, which profile.toml does not declare",
            ]
        );
    }

    #[test]
    fn a_template_whose_literal_links_have_another_scheme_is_reported() {
        let doc: TemplateDoc = toml::from_str(
            r##"
name = "promo"
channels = ["email"]
default_locale = "en"
variables = ["url"]
[locales.en.email]
subject = "Hello"
html = '<a href="{{ url }}">ok</a> <a href="#top">ok</a> <a href="javascript:void(0)">bad</a> <a href="data:text/html,x">bad</a>'
text = "Hello"
"##,
        )
        .unwrap();
        let problems = check_all(&[CompiledTemplate::compile(doc).unwrap()], &Limits::default());
        assert_eq!(
            problems,
            [
                "promo: en/email/html.html: link 3 has scheme javascript, not https, http or mailto",
                "promo: en/email/html.html: link 4 has scheme data, not https, http or mailto",
            ],
        );
    }

    #[test]
    fn a_template_over_its_limits_is_reported() {
        let templates = load_dir(&repo_root().join("templates")).unwrap();
        let strict = Limits { max_sms_segments: 0, ..Limits::default() };
        let problems = check_all(&templates, &strict);
        assert!(problems.iter().any(|p| p.starts_with("order_shipped: en/sms takes 1 segments")), "{problems:#?}");
    }
}
