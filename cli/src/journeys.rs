//! Journey files (`journeys/*.toml`): load and check them (`herald journeys check`, and
//! before `herald templates push`), and report a pushed journey (`herald journey status`).

use crate::templates::{read_toml, toml_files};
use anyhow::bail;
use herald::domain::TemplateName;
use herald::domain::journey::{Action, Engagement, JourneyDoc, JourneyName, RunStatus, check_journeys, step_message};
use herald::domain::profile::ProfileSchema;
use herald::ports::{JourneyStore, Journeys, Ledger, PortResult};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::Path;

/// Every `*.toml` in `dir`, sorted by name (a missing folder is none); each file is named
/// after its journey.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<JourneyDoc>> {
    toml_files(dir, true)?
        .iter()
        .map(|p| {
            let doc: JourneyDoc = read_toml(p, "a valid journey")?;
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if doc.name.as_str() != stem {
                bail!("{}: the journey is named {} but the file {stem}", p.display(), doc.name);
            }
            Ok(doc)
        })
        .collect()
}

/// Loads the journeys in `dir` and checks them against the templates named `templates`
/// and the profile schema: the problems, one line each.
pub fn check(
    dir: &Path,
    templates: &BTreeSet<TemplateName>,
    schema: &ProfileSchema,
) -> anyhow::Result<(Vec<JourneyDoc>, Vec<String>)> {
    let docs = load_dir(dir)?;
    let problems = check_journeys(&docs, |t| templates.contains(t), schema);
    Ok((docs, problems))
}

/// What `herald journey status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub journey: String,
    pub latest: Option<u32>,
    /// People by the version they entered.
    pub versions: BTreeMap<u32, usize>,
    /// Active people at each step (in the order of the latest version's steps, then others).
    pub at_step: Vec<(String, usize)>,
    pub completed: usize,
    pub exited: BTreeMap<String, usize>,
    /// Per send step: its messages in the ledger (each person's current run) by status,
    /// and how many reached delivered, opened, clicked.
    pub funnel: Vec<StepFunnel>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepFunnel {
    pub step: String,
    pub template: String,
    pub messages: usize,
    pub by_status: BTreeMap<String, usize>,
    pub delivered: usize,
    pub opened: usize,
    pub clicked: usize,
}

/// Reads everyone's state in the journey (one Query of its partition) and, for each send
/// step of the version they are on, their message's status in the ledger (one read per
/// person and send step: an operator command).
pub async fn status<J: Journeys, D: JourneyStore, L: Ledger>(
    journeys: &J,
    definitions: &D,
    ledger: &L,
    name: &JourneyName,
) -> PortResult<Status> {
    let latest = definitions.journey(name, None).await?;
    let states = journeys.list(name).await?;
    let mut report =
        Status { journey: name.to_string(), latest: latest.as_ref().map(|j| j.version()), ..Status::default() };
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    let mut funnels: BTreeMap<String, StepFunnel> = BTreeMap::new();
    let mut step_order: Vec<String> = latest.iter().flat_map(|j| j.steps.iter().map(|s| s.id.to_string())).collect();
    for state in &states {
        *report.versions.entry(state.version).or_default() += 1;
        match (state.status, &state.step) {
            (RunStatus::Active, Some(step)) => *at.entry(step.to_string()).or_default() += 1,
            (RunStatus::Completed, _) => report.completed += 1,
            (RunStatus::Exited, _) => {
                *report.exited.entry(state.exit_reason.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1
            }
            (RunStatus::Active, None) => {}
        }
        let Some(journey) = definitions.journey(name, Some(state.version)).await? else { continue };
        for step in &journey.steps {
            let Action::Send { template, .. } = &step.action else { continue };
            let Some(id) = step_message(name, &state.recipient, state.run, &step.id) else { continue };
            let Some(entry) = ledger.get(&id).await? else { continue };
            let f = funnels.entry(step.id.to_string()).or_insert_with(|| StepFunnel {
                step: step.id.to_string(),
                template: template.to_string(),
                ..StepFunnel::default()
            });
            f.messages += 1;
            *f.by_status.entry(entry.status.to_string()).or_default() += 1;
            let history: Vec<&str> = entry.history.iter().map(|h| h.status.as_str()).collect();
            f.delivered += usize::from(Engagement::Delivered.reached(entry.status, history.iter().copied()));
            f.opened += usize::from(Engagement::Opened.reached(entry.status, history.iter().copied()));
            f.clicked += usize::from(Engagement::Clicked.reached(entry.status, history.iter().copied()));
            if !step_order.contains(&step.id.to_string()) {
                step_order.push(step.id.to_string());
            }
        }
    }
    for step in &step_order {
        if let Some(n) = at.remove(step) {
            report.at_step.push((step.clone(), n));
        } else if latest.as_ref().is_some_and(|j| j.steps.iter().any(|s| s.id.as_str() == step)) {
            report.at_step.push((step.clone(), 0));
        }
        if let Some(f) = funnels.remove(step) {
            report.funnel.push(f);
        }
    }
    report.at_step.extend(at);
    report.funnel.extend(funnels.into_values());
    Ok(report)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let people: usize = self.versions.values().sum();
        let latest = self.latest.map(|v| format!("latest v{v}")).unwrap_or_else(|| "not pushed".into());
        let versions: Vec<String> = self.versions.iter().map(|(v, n)| format!("v{v}: {n}")).collect();
        writeln!(f, "journey {} ({latest}); {people} people ({})", self.journey, versions.join(", "))?;
        let mut line = String::new();
        for (step, n) in &self.at_step {
            let _ = write!(line, "  {step}: {n}");
        }
        writeln!(f, "at step:{}", if line.is_empty() { " none".into() } else { line })?;
        writeln!(f, "completed: {}", self.completed)?;
        let exited: Vec<String> = self.exited.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        let total: usize = self.exited.values().sum();
        writeln!(
            f,
            "exited: {total}{}",
            if exited.is_empty() { String::new() } else { format!(" ({})", exited.join(", ")) }
        )?;
        writeln!(f, "funnel per send step (each person's current run, from the ledger):")?;
        if self.funnel.is_empty() {
            writeln!(f, "  no messages yet")?;
        }
        for s in &self.funnel {
            let statuses: Vec<String> = s.by_status.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(
                f,
                "  {} ({}): messages {}, delivered {}, opened {}, clicked {}; now: {}",
                s.step,
                s.template,
                s.messages,
                s.delivered,
                s.opened,
                s.clicked,
                statuses.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::repo_root;
    use herald::domain::journey::Journey;

    #[test]
    fn every_shipped_journey_passes_its_checks() {
        let root = repo_root();
        let templates: BTreeSet<TemplateName> =
            crate::templates::load_dir(&root.join("templates")).unwrap().iter().map(|t| t.name().clone()).collect();
        let schema = crate::segments::load_profile(&root.join("profile.toml")).unwrap();
        let (docs, problems) = check(&root.join("journeys"), &templates, &schema).unwrap();
        assert!(!docs.is_empty(), "the repo ships an example journey");
        assert!(problems.is_empty(), "{problems:#?}");
        for d in docs {
            Journey::build(d).unwrap();
        }
    }
}
