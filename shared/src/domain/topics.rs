//! The topics a person can choose in the preference center (`topics.toml` at the repo
//! root, pushed to the templates table by `herald topics push`).
//!
//! Each topic lists the channels it is sent on and its name and description in the
//! languages the page speaks ([`crate::domain::preferences::Lang`]); English is required
//! and is what a language without its own text falls back to. The page shows topics in
//! the file's order.
//!
//! ```toml
//! [[topic]]
//! id = "news"
//! channels = ["email", "push"]
//! name = { en = "News", fr = "Actualités" }
//! description = { en = "What is new in the shop, once a week." }
//! ```
//!
//! Topics here are marketing topics: the page records opt-ins and opt-outs for them,
//! nothing else. A transactional topic (order updates, security codes) does not belong
//! in the file: listing it would let "stop all marketing" opt the person out of it.

use crate::domain::preferences::Lang;
use crate::domain::{Channel, Topic};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What `topics.toml` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    #[serde(default, rename = "topic")]
    pub topics: Vec<TopicDef>,
}

/// One topic of the preference center.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDef {
    pub id: Topic,
    /// The channels it is sent on: a checkbox each on the page.
    pub channels: Vec<Channel>,
    /// By language (`en`, `fr`, `de`, `es`); `en` required.
    pub name: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub description: BTreeMap<String, String>,
}

/// The longest name and description the page lays out well.
pub const MAX_NAME: usize = 80;
pub const MAX_DESCRIPTION: usize = 400;
/// More topics than a person reads through on one page.
pub const MAX_TOPICS: usize = 50;

impl TopicDef {
    /// The name in `lang`, else the English one.
    pub fn name(&self, lang: Lang) -> &str {
        localized(&self.name, lang).unwrap_or_else(|| self.id.as_str())
    }

    /// The description in `lang`, else the English one, if it has one.
    pub fn description(&self, lang: Lang) -> Option<&str> {
        localized(&self.description, lang)
    }

    pub fn offers(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }
}

fn localized(texts: &BTreeMap<String, String>, lang: Lang) -> Option<&str> {
    texts.get(lang.as_str()).or_else(|| texts.get(Lang::En.as_str())).map(String::as_str)
}

impl Topics {
    pub fn get(&self, id: &str) -> Option<&TopicDef> {
        self.topics.iter().find(|t| t.id.as_str() == id)
    }

    /// Every (topic, channel) the page offers, in page order.
    pub fn choices(&self) -> impl Iterator<Item = (&Topic, Channel)> {
        self.topics.iter().flat_map(|t| t.channels.iter().map(move |c| (&t.id, *c)))
    }

    /// Problems that make the file unusable, one line each; none when it is fine.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.topics.len() > MAX_TOPICS {
            problems.push(format!("{} topics, at most {MAX_TOPICS} fit one page", self.topics.len()));
        }
        let mut seen = BTreeSet::new();
        for t in &self.topics {
            let id = &t.id;
            if !seen.insert(id.as_str()) {
                problems.push(format!("topic {id} is listed twice"));
            }
            if t.channels.is_empty() {
                problems.push(format!("topic {id}: channels is empty, list the channels it is sent on"));
            }
            let mut channels = BTreeSet::new();
            for c in &t.channels {
                if !channels.insert(*c) {
                    problems.push(format!("topic {id}: channel {c} is listed twice"));
                }
            }
            if t.name.get(Lang::En.as_str()).is_none_or(|n| n.trim().is_empty()) {
                problems.push(format!("topic {id}: name has no English text (name.en)"));
            }
            if !t.description.is_empty() && t.description.get(Lang::En.as_str()).is_none_or(|d| d.trim().is_empty()) {
                problems.push(format!("topic {id}: description has no English text (description.en)"));
            }
            for (field, texts, max) in [("name", &t.name, MAX_NAME), ("description", &t.description, MAX_DESCRIPTION)] {
                for (lang, text) in texts {
                    if Lang::parse(lang).is_none() {
                        problems.push(format!(
                            "topic {id}: {field}.{lang}: the page speaks {}, not {lang}",
                            Lang::ALL.map(Lang::as_str).join(", ")
                        ));
                    }
                    let len = text.chars().count();
                    if len > max {
                        problems.push(format!("topic {id}: {field}.{lang} is {len} characters, at most {max}"));
                    }
                    if text.chars().any(char::is_control) {
                        problems.push(format!("topic {id}: {field}.{lang} holds a control character"));
                    }
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Topics, String> {
        toml::from_str(raw).map_err(|e| e.to_string())
    }

    #[test]
    fn a_topics_file_reads_in_its_order_with_english_as_the_fallback() {
        let topics = parse(
            r#"
[[topic]]
id = "news"
channels = ["email", "push"]
name = { en = "News", fr = "Actualités" }
description = { en = "Once a week." }

[[topic]]
id = "promotions"
channels = ["sms", "inbox"]
name = { en = "Offers" }
"#,
        )
        .unwrap();
        assert!(topics.check().is_empty(), "{:?}", topics.check());
        let ids: Vec<_> = topics.topics.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["news", "promotions"]);
        let news = topics.get("news").unwrap();
        assert_eq!((news.name(Lang::Fr), news.name(Lang::De)), ("Actualités", "News"));
        assert_eq!(news.description(Lang::Es), Some("Once a week."));
        assert_eq!(topics.get("promotions").unwrap().description(Lang::En), None);
        let choices: Vec<_> = topics.choices().map(|(t, c)| format!("{t}.{c}")).collect();
        assert_eq!(choices, ["news.email", "news.push", "promotions.sms", "promotions.inbox"]);
        assert!(news.offers(Channel::Email) && !news.offers(Channel::Sms));
        // Stored as JSON and read back unchanged.
        let json = serde_json::to_string(&topics).unwrap();
        assert_eq!(serde_json::from_str::<Topics>(&json).unwrap(), topics);
    }

    #[test]
    fn an_unknown_channel_a_missing_english_name_and_other_mistakes_are_reported() {
        let err = parse("[[topic]]\nid = \"news\"\nchannels = [\"fax\"]\nname = { en = \"News\" }").unwrap_err();
        assert!(err.contains("fax"), "{err}");
        let err = parse("[[topic]]\nid = \"a b\"\nchannels = [\"sms\"]\nname = { en = \"x\" }").unwrap_err();
        assert!(err.contains("topic"), "{err}");
        assert!(parse("[[topic]]\nid = \"x\"\nchannels = []\nname = {}\ncolour = 1").is_err(), "unknown field");

        let topics = parse(
            r#"
[[topic]]
id = "news"
channels = ["email", "email"]
name = { fr = "Actualités", it = "Notizie" }
description = { fr = "x" }
[[topic]]
id = "news"
channels = []
name = { en = " " }
"#,
        )
        .unwrap();
        assert_eq!(
            topics.check(),
            [
                "topic news: channel email is listed twice",
                "topic news: name has no English text (name.en)",
                "topic news: description has no English text (description.en)",
                "topic news: name.it: the page speaks en, fr, de, es, not it",
                "topic news is listed twice",
                "topic news: channels is empty, list the channels it is sent on",
                "topic news: name has no English text (name.en)",
            ]
        );
        let long = format!("[[topic]]\nid = \"n\"\nchannels = [\"sms\"]\nname = {{ en = \"{}\" }}", "x".repeat(81));
        assert_eq!(parse(&long).unwrap().check(), ["topic n: name.en is 81 characters, at most 80"]);
        assert!(Topics::default().check().is_empty(), "no topics is a valid (empty) page");
    }
}
