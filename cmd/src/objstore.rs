//! The `--objstore.config-file` / `--objstore.config` flags, as Thanos spells them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

#[derive(Args, Clone)]
pub struct ObjstoreArgs {
    /// Path to the objstore YAML (Thanos format: type, config, prefix).
    #[arg(long = "objstore.config-file", conflicts_with = "objstore_config")]
    objstore_config_file: Option<PathBuf>,
    /// The objstore YAML itself, instead of a file.
    #[arg(long = "objstore.config")]
    objstore_config: Option<String>,
}

impl ObjstoreArgs {
    /// The configured bucket, or `None` when neither flag is set.
    pub fn bucket(&self) -> anyhow::Result<Option<strata_shipper::Bucket>> {
        let Some((yaml, source)) = crate::file_or_inline(
            self.objstore_config_file.as_deref(),
            "--objstore.config-file",
            self.objstore_config.as_deref(),
            "--objstore.config",
        )?
        else {
            return Ok(None);
        };
        Ok(Some(strata_shipper::parse_objstore_config(&yaml, &source)?.build()?))
    }
}

/// A FILESYSTEM bucket (Thanos's local-directory bucket) rooted at `dir`, created if missing.
/// `source` names it in messages.
pub fn filesystem_bucket(dir: &Path, source: &str) -> anyhow::Result<strata_shipper::Bucket> {
    let directory = dir.to_str().with_context(|| format!("bucket directory {} is not UTF-8", dir.display()))?;
    let config = strata_shipper::BucketConfig {
        provider: strata_shipper::Provider::Filesystem(strata_shipper::config::FilesystemConfig {
            directory: directory.to_owned(),
        }),
        prefix: String::new(),
        source: source.to_owned(),
    };
    Ok(config.build()?)
}
