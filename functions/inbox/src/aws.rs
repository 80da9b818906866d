//! The AWS wiring of the inbox API.

use crate::{Config, Deps};
use herald::aws::SdkConfig;

pub fn deps(_sdk: &SdkConfig, _config: &Config) -> Deps {
    Deps
}
