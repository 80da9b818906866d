//! Herald's operator and local-running commands, as a library the end-to-end
//! tests share: a local stack built from `template.yaml`, the functions run on
//! its real queues, the demo, template checks.

pub mod broadcast;
pub mod demo;
pub mod dlq;
pub mod funnel;
pub mod import;
pub mod inbox;
pub mod journeys;
pub mod local;
pub mod moto;
pub mod preferences;
pub mod preview;
pub mod runner;
pub mod segments;
pub mod sendtest;
pub mod stack;
pub mod templates;
pub mod web;
