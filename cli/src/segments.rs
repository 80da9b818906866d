//! Segment files (`segments/*.toml`) and the profile schema (`profile.toml`): load,
//! check, and count a pushed segment's audience by scanning the recipients table.

use crate::templates::{read_toml, toml_files};
use anyhow::bail;
use chrono::{DateTime, Utc};
use herald::domain::profile::ProfileSchema;
use herald::domain::segment::{Audience, AudienceVerdict, MissReason, SegmentDoc, check_segments};
use herald::domain::{Channel, RecipientId};
use herald::ports::{AudienceScan, PortResult, ScanCursor};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;

/// Reads `profile.toml`; a missing file declares nothing.
pub fn load_profile(path: &Path) -> anyhow::Result<ProfileSchema> {
    if !path.exists() {
        return Ok(ProfileSchema::default());
    }
    let schema: ProfileSchema = read_toml(path, "a valid profile schema")?;
    schema.validate().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(schema)
}

/// Reads every `*.toml` in `dir`, sorted by name (a missing folder is none); each file is
/// named after its segment.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<SegmentDoc>> {
    toml_files(dir, true)?
        .iter()
        .map(|p| {
            let doc: SegmentDoc = read_toml(p, "a valid segment")?;
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if doc.name.as_str() != stem {
                bail!("{}: the segment is named {} but the file {stem}", p.display(), doc.name);
            }
            Ok(doc)
        })
        .collect()
}

/// Loads and checks the segments and the profile schema together: the problems, one line each.
pub fn check(dir: &Path, profile: &Path) -> anyhow::Result<(Vec<SegmentDoc>, ProfileSchema, Vec<String>)> {
    let schema = load_profile(profile)?;
    let docs = load_dir(dir)?;
    let problems = check_segments(&docs, &schema);
    Ok((docs, schema, problems))
}

/// What `herald segments count` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Count {
    pub segment: String,
    pub version: u32,
    pub exclusions: Vec<String>,
    /// Profiles judged.
    pub profiles: usize,
    /// Items the scan read (profiles, consent audit and endpoint index items): its cost.
    pub items_read: usize,
    pub pages: usize,
    pub matched: usize,
    /// Matched people reachable (with consent) on each channel.
    pub on_channel: BTreeMap<Channel, usize>,
    pub missed: BTreeMap<MissReason, usize>,
    /// Some matched recipients' ids (ids only: never a contact point).
    pub sample: Vec<RecipientId>,
}

/// Judges every profile of the recipients table against `audience` at `now`, scanning
/// in `total_segments` parallel segments of pages of `page_limit` items.
pub async fn count<S: AudienceScan>(
    scan: &S,
    audience: &Audience,
    now: DateTime<Utc>,
    total_segments: u32,
    page_limit: u32,
    sample: usize,
) -> PortResult<Count> {
    let workers = ScanCursor::all(total_segments.max(1)).into_iter().map(|mut cursor| async move {
        let mut part = Count::default();
        loop {
            let page = scan.page(&cursor, page_limit).await?;
            part.pages += 1;
            part.items_read += page.items_read;
            for r in &page.recipients {
                part.profiles += 1;
                match audience.judge(r, now) {
                    AudienceVerdict::Match { channels } => {
                        part.matched += 1;
                        for c in channels {
                            *part.on_channel.entry(c).or_default() += 1;
                        }
                        if let Some(id) = r.id.as_ref().filter(|_| part.sample.len() < sample) {
                            part.sample.push(id.clone());
                        }
                    }
                    AudienceVerdict::Miss(reason) => *part.missed.entry(reason).or_default() += 1,
                }
            }
            match page.next {
                Some(next) => cursor.start = Some(next),
                None => return PortResult::Ok(part),
            }
        }
    });
    let mut total = Count {
        segment: audience.name().to_string(),
        version: audience.segment.version,
        exclusions: audience.exclusions.iter().map(|d| format!("{} v{}", d.name, d.version)).collect(),
        ..Count::default()
    };
    for part in futures::future::try_join_all(workers).await? {
        total.profiles += part.profiles;
        total.items_read += part.items_read;
        total.pages += part.pages;
        total.matched += part.matched;
        for (c, n) in part.on_channel {
            *total.on_channel.entry(c).or_default() += n;
        }
        for (r, n) in part.missed {
            *total.missed.entry(r).or_default() += n;
        }
        total.sample.extend(part.sample);
    }
    total.sample.sort();
    total.sample.truncate(sample);
    Ok(total)
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = format!("segment {} v{}", self.segment, self.version);
        if !self.exclusions.is_empty() {
            write!(out, " (excluding {})", self.exclusions.join(", then "))?;
        }
        writeln!(
            out,
            ": {} profile(s) judged, {} item(s) read in {} page(s)",
            self.profiles, self.items_read, self.pages
        )?;
        let channels: Vec<String> = self.on_channel.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let reach =
            if channels.is_empty() { String::new() } else { format!("  (by channel: {})", channels.join(", ")) };
        writeln!(out, "  matched      {:>8}{reach}", self.matched)?;
        for reason in MissReason::ALL {
            let n = self.missed.get(&reason).copied().unwrap_or_default();
            writeln!(out, "  {:<12} {n:>8}", reason.as_str())?;
        }
        let ids: Vec<&str> = self.sample.iter().map(RecipientId::as_str).collect();
        write!(out, "  sample       {}", if ids.is_empty() { "-".to_owned() } else { ids.join(", ") })?;
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::repo_root;

    #[test]
    fn the_shipped_segments_and_profile_pass_their_checks() {
        let root = repo_root();
        let (docs, schema, problems) = check(&root.join("segments"), &root.join("profile.toml")).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(docs.len() >= 2 && docs.iter().any(|d| d.exclude.is_some()), "examples, one excluding another");
        assert!(schema.get("first_name").is_some());
    }

    #[test]
    fn a_segment_on_an_undeclared_attribute_is_reported() {
        let root = std::env::temp_dir().join(format!("herald-segments-{}", std::process::id()));
        let (dir, profile) = (root.join("segments"), root.join("profile.toml"));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        std::fs::write(&profile, "[attributes]\nplan = \"string\"\n").unwrap();
        let vip = "name = \"vip\"\nchannels = [\"email\"]\n[filter]\nfield = \"attributes.tier\"\nequals = \"gold\"\n";
        write("vip.toml", &format!("exclude = \"gone\"\n{vip}"));
        let (_, _, problems) = check(&dir, &profile).unwrap();
        assert_eq!(problems, ["segment vip: excludes segment gone, which does not exist"]);
        write("vip.toml", vip);
        let (_, _, problems) = check(&dir, &profile).unwrap();
        assert_eq!(problems, ["segment vip: filter: attributes.tier is not declared in profile.toml"]);
        write("other.toml", "name = \"vip\"\nchannels = [\"email\"]\n");
        assert!(load_dir(&dir).unwrap_err().to_string().contains("named vip but the file other"));
        std::fs::write(&profile, "[attributes]\nplan = \"text\"\n").unwrap();
        assert!(load_profile(&profile).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_report_lists_every_reason_and_ids_only() {
        let count = Count {
            segment: "spring_shoppers".into(),
            version: 2,
            exclusions: vec!["recent_buyers v1".into()],
            profiles: 1000,
            items_read: 1450,
            pages: 4,
            matched: 600,
            on_channel: BTreeMap::from([(Channel::Push, 250), (Channel::Email, 500)]),
            missed: BTreeMap::from([(MissReason::Filter, 300), (MissReason::NoConsent, 100)]),
            sample: vec![RecipientId::new("user-1").unwrap(), RecipientId::new("user-7").unwrap()],
        };
        assert_eq!(
            count.to_string(),
            "segment spring_shoppers v2 (excluding recent_buyers v1): 1000 profile(s) judged, 1450 item(s) read in 4 page(s)
  matched           600  (by channel: push 250, email 500)
  filter            300
  excluded            0
  no_consent        100
  unreachable         0
  sample       user-1, user-7"
        );
    }
}
