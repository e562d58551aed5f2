//! The Thanos objstore YAML (`type`, `config`, `prefix`) mapped onto the `object_store` crate.
//!
//! Every field Thanos documents for S3, GCS, AZURE and FILESYSTEM is accepted so that an existing
//! Thanos bucket config works unchanged; a field that cannot be honoured is either mapped to the
//! nearest `object_store` setting, logged as not applied, or refused when ignoring it would store
//! data differently than asked (signature v2, an unsupported encryption type). Unknown fields and
//! types are errors that name the field and, where the YAML parser knows it, the line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, Certificate, ClientOptions, ObjectStore, RetryConfig,
};
use serde::Deserialize;
use tracing::warn;

use crate::bucket::{Bucket, CredentialSearch};
use crate::{Error, Result};

/// Multipart part size when `part_size` is absent or 0 (Thanos's default).
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;
/// S3 refuses parts smaller than this (except the last one).
const MIN_S3_PART_SIZE: u64 = 5 << 20;
/// S3 refuses parts larger than this.
const MAX_S3_PART_SIZE: u64 = 5 << 30;

/// A parsed objstore config: which store, its settings, and the key prefix for everything.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketConfig {
    pub provider: Provider,
    /// Prefix of every key, without leading or trailing `/`; empty for none.
    pub prefix: String,
    /// Where the config came from (a file name or `--objstore.config`), for messages.
    pub source: String,
}

/// The store-specific part of the config.
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
    Filesystem(FilesystemConfig),
}

/// `type: S3`: the fields of Thanos's S3 config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub region: String,
    /// Accepted for compatibility; object_store never uses dual-stack endpoints.
    #[serde(default)]
    pub disable_dualstack: bool,
    /// Credentials from the environment (AWS SDK chain) instead of the config.
    #[serde(default)]
    pub aws_sdk_auth: bool,
    #[serde(default)]
    pub access_key: String,
    /// Plain HTTP instead of HTTPS.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub signature_version2: bool,
    #[serde(default)]
    pub secret_key: String,
    #[serde(default)]
    pub session_token: String,
    /// `x-amz-meta-*` headers set on every uploaded object.
    #[serde(default)]
    pub put_user_metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub http_config: HttpConfig,
    #[serde(default)]
    pub trace: TraceConfig,
    #[serde(default)]
    pub list_objects_version: ListObjectsVersion,
    #[serde(default)]
    pub bucket_lookup_type: BucketLookupType,
    /// Accepted for compatibility; object_store does not send Content-MD5.
    #[serde(default = "yes")]
    pub send_content_md5: bool,
    #[serde(default)]
    pub disable_multipart: bool,
    /// Multipart part size in bytes; 0 means the default.
    #[serde(default)]
    pub part_size: u64,
    #[serde(default)]
    pub sse_config: SseConfig,
    #[serde(default)]
    pub sts_endpoint: String,
    /// 0 means object_store's default (10 retries within 3 minutes).
    #[serde(default)]
    pub max_retries: usize,
}

fn yes() -> bool {
    true
}

/// `list_objects_version`: only ListObjectsV2 is implemented by object_store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ListObjectsVersion {
    #[default]
    #[serde(rename = "")]
    Default,
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v2")]
    V2,
}

/// `bucket_lookup_type`: how the bucket appears in request URLs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum BucketLookupType {
    /// Virtual-hosted for AWS endpoints, path style for everything else (as minio-go does).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "virtual-hosted")]
    VirtualHosted,
    #[serde(rename = "path")]
    Path,
}

/// `sse_config`: server-side encryption.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseConfig {
    /// `""` (none), `SSE-S3`, `SSE-KMS` or `SSE-C`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub kms_key_id: String,
    #[serde(default)]
    pub kms_encryption_context: BTreeMap<String, String>,
    /// Path to a file holding the 32-byte SSE-C key.
    #[serde(default)]
    pub encryption_key: String,
}

/// `trace`: minio-go's request tracing; nothing to switch on here.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    #[serde(default)]
    pub enable: bool,
}

/// `http_config`: Go `net/http` transport settings. Those with an equivalent in object_store's
/// client are applied; the others are logged as not applied when set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default, deserialize_with = "strata_tsdb::gotext::deserialize_model_duration")]
    pub idle_conn_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "strata_tsdb::gotext::deserialize_model_duration")]
    pub response_header_timeout: Option<Duration>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default, deserialize_with = "strata_tsdb::gotext::deserialize_model_duration")]
    pub tls_handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "strata_tsdb::gotext::deserialize_model_duration")]
    pub expect_continue_timeout: Option<Duration>,
    #[serde(default)]
    pub max_idle_conns: usize,
    #[serde(default)]
    pub max_idle_conns_per_host: usize,
    #[serde(default)]
    pub max_conns_per_host: usize,
    #[serde(default)]
    pub tls_config: TlsConfig,
    #[serde(default)]
    pub disable_compression: bool,
}

/// `http_config.tls_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `type: GCS`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    pub bucket: String,
    /// The service account key as JSON text; empty means application default credentials.
    #[serde(default)]
    pub service_account: String,
    #[serde(default)]
    pub use_grpc: bool,
    #[serde(default)]
    pub grpc_conn_pool_size: usize,
    #[serde(default)]
    pub http_config: HttpConfig,
    /// Resumable-upload chunk size; used as the multipart part size when set.
    #[serde(default)]
    pub chunk_size_bytes: u64,
    #[serde(default)]
    pub max_retries: usize,
}

/// `type: AZURE`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    #[serde(default)]
    pub az_tenant_id: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    pub storage_account: String,
    #[serde(default)]
    pub storage_account_key: String,
    #[serde(default)]
    pub storage_connection_string: String,
    #[serde(default)]
    pub storage_create_container: bool,
    pub container: String,
    /// Endpoint suffix; the account's URL is `https://<storage_account>.<endpoint>`.
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub user_assigned_id: String,
    #[serde(default)]
    pub max_retries: usize,
    #[serde(default)]
    pub reader_config: AzureReaderConfig,
    #[serde(default)]
    pub pipeline_config: AzurePipelineConfig,
    #[serde(default)]
    pub http_config: HttpConfig,
    #[serde(default)]
    pub msi_resource: String,
}

/// `reader_config` of the Azure config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureReaderConfig {
    #[serde(default)]
    pub max_retry_requests: usize,
}

/// `pipeline_config` of the Azure config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzurePipelineConfig {
    #[serde(default)]
    pub max_tries: usize,
    #[serde(default, deserialize_with = "strata_tsdb::gotext::deserialize_model_duration")]
    pub try_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "strata_tsdb::gotext::deserialize_model_duration")]
    pub retry_delay: Option<Duration>,
    #[serde(default, deserialize_with = "strata_tsdb::gotext::deserialize_model_duration")]
    pub max_retry_delay: Option<Duration>,
}

/// `type: FILESYSTEM`: a local directory holding the bucket.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    pub directory: String,
}

/// The top level, with `config` kept as YAML until `type` says what it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: serde_norway::Value,
    #[serde(default)]
    prefix: Option<String>,
}

/// The top level with a typed `config`, parsed from the text again so errors keep their line.
#[derive(Deserialize)]
struct TypedTop<T> {
    config: T,
}

const TYPES: &str = "S3, GCS, AZURE, FILESYSTEM";

/// Parses the objstore YAML; `source` names it (a file path, or `--objstore.config`) in errors.
pub fn parse_objstore_config(yaml: &str, source: &str) -> Result<BucketConfig> {
    let raw: RawTop = serde_norway::from_str(yaml).map_err(|e| yaml_error(source, "", &e))?;
    let kind = raw.kind.to_ascii_uppercase();
    let provider = match kind.as_str() {
        "S3" => Provider::S3(typed(yaml, &raw.config, source, "S3")?),
        "GCS" => Provider::Gcs(typed(yaml, &raw.config, source, "GCS")?),
        "AZURE" => Provider::Azure(typed(yaml, &raw.config, source, "AZURE")?),
        "FILESYSTEM" => Provider::Filesystem(typed(yaml, &raw.config, source, "FILESYSTEM")?),
        _ => {
            return Err(Error::config(
                source,
                format!("unknown type {:?} (field \"type\"), expected one of {TYPES}", raw.kind),
            ))
        }
    };
    let cfg = BucketConfig {
        provider,
        prefix: raw.prefix.unwrap_or_default().trim_matches('/').to_owned(),
        source: source.to_owned(),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Deserializes `config` as `T`. A present `config` is read from the original text so that
/// errors carry line and column; a missing one is an empty map (required fields then fail).
fn typed<T: serde::de::DeserializeOwned>(
    yaml: &str,
    config: &serde_norway::Value,
    source: &str,
    kind: &str,
) -> Result<T> {
    let ctx = format!("{kind} config");
    if config.is_null() {
        return serde_norway::from_value(serde_norway::Value::Mapping(Default::default()))
            .map_err(|e| yaml_error(source, &ctx, &e));
    }
    serde_norway::from_str::<TypedTop<T>>(yaml).map(|t| t.config).map_err(|e| yaml_error(source, &ctx, &e))
}

/// Formats a YAML error as `<context>[.<path>]: <message> (line L, column C)`, where the path is
/// the field's location inside `config`.
fn yaml_error(source: &str, ctx: &str, e: &serde_norway::Error) -> Error {
    let mut text = e.to_string();
    let mut location = e.location().map(|l| (l.line(), l.column()));
    if let Some((line, column)) = location {
        let at = format!(" at line {line} column {column}");
        if let Some(stripped) = text.strip_suffix(&at) {
            text = stripped.to_owned();
        } else if text.contains(&at) {
            // Parser (libyaml) messages carry the position inside the text already.
            location = None;
        }
    }
    // serde_norway prefixes the path from the document root ("config.http_config: ...").
    if !ctx.is_empty() {
        text = if let Some(rest) = text.strip_prefix("config: ") {
            format!("{ctx}: {rest}")
        } else if let Some(rest) = text.strip_prefix("config.") {
            format!("{ctx}.{rest}")
        } else {
            format!("{ctx}: {text}")
        };
    }
    if let Some((line, column)) = location {
        text = format!("{text} (line {line}, column {column})");
    }
    Error::config(source, text)
}

/// A Thanos `model.Duration` field: Prometheus's duration syntax ("1m30s", "2m", "500ms", "1d").
/// An empty string counts as absent.
impl BucketConfig {
    fn err(&self, field: &str, message: impl std::fmt::Display) -> Error {
        let kind = match &self.provider {
            Provider::S3(_) => "S3",
            Provider::Gcs(_) => "GCS",
            Provider::Azure(_) => "AZURE",
            Provider::Filesystem(_) => "FILESYSTEM",
        };
        Error::config(&self.source, format!("{kind} config: {field}: {message}"))
    }

    /// Checks what the types alone cannot: required fields that are empty, unsupported values.
    fn validate(&self) -> Result<()> {
        match &self.provider {
            Provider::S3(c) => {
                if c.bucket.is_empty() {
                    return Err(self.err("bucket", "must not be empty"));
                }
                if c.endpoint.contains("://") || c.endpoint.contains('/') {
                    return Err(self.err(
                        "endpoint",
                        format!(
                            "{:?} must be host[:port] without scheme or path (set insecure: true for http)",
                            c.endpoint
                        ),
                    ));
                }
                if c.signature_version2 {
                    return Err(self.err("signature_version2", "AWS signature version 2 is not supported; only v4 is"));
                }
                if c.list_objects_version == ListObjectsVersion::V1 {
                    return Err(self.err("list_objects_version", "\"v1\" is not supported; only ListObjectsV2 is"));
                }
                if c.access_key.is_empty() != c.secret_key.is_empty() {
                    return Err(self.err(
                        if c.access_key.is_empty() { "access_key" } else { "secret_key" },
                        "access_key and secret_key must be set together (or neither, for environment credentials)",
                    ));
                }
                if c.aws_sdk_auth && !c.access_key.is_empty() {
                    return Err(self.err("aws_sdk_auth", "cannot be combined with access_key/secret_key"));
                }
                if c.part_size != 0 && !(MIN_S3_PART_SIZE..=MAX_S3_PART_SIZE).contains(&c.part_size) {
                    return Err(self.err(
                        "part_size",
                        format!(
                            "{} is outside S3's part size limits ({MIN_S3_PART_SIZE}..={MAX_S3_PART_SIZE} bytes)",
                            c.part_size
                        ),
                    ));
                }
                match c.sse_config.kind.as_str() {
                    "" | "SSE-S3" => {}
                    "SSE-KMS" => {
                        if c.sse_config.kms_key_id.is_empty() {
                            return Err(self.err("sse_config.kms_key_id", "required for SSE-KMS"));
                        }
                        if !c.sse_config.kms_encryption_context.is_empty() {
                            return Err(self.err("sse_config.kms_encryption_context", "is not supported"));
                        }
                    }
                    "SSE-C" => {
                        if c.sse_config.encryption_key.is_empty() {
                            return Err(
                                self.err("sse_config.encryption_key", "required for SSE-C (path to the key file)")
                            );
                        }
                    }
                    other => {
                        return Err(
                            self.err("sse_config.type", format!("{other:?} is not one of SSE-S3, SSE-KMS, SSE-C"))
                        )
                    }
                }
            }
            Provider::Gcs(c) => {
                if c.bucket.is_empty() {
                    return Err(self.err("bucket", "must not be empty"));
                }
                if c.use_grpc {
                    return Err(self.err("use_grpc", "the gRPC API is not supported; only the JSON API is"));
                }
            }
            Provider::Azure(c) => {
                if c.storage_account.is_empty() {
                    return Err(self.err("storage_account", "must not be empty"));
                }
                if c.container.is_empty() {
                    return Err(self.err("container", "must not be empty"));
                }
                if !c.storage_connection_string.is_empty() {
                    return Err(self.err(
                        "storage_connection_string",
                        "is not supported; set storage_account and storage_account_key",
                    ));
                }
            }
            Provider::Filesystem(c) => {
                if c.directory.is_empty() {
                    return Err(self.err("directory", "must not be empty"));
                }
            }
        }
        Ok(())
    }

    /// Connects nothing yet: builds the `object_store` client for this config. Settings the
    /// config leaves out (credentials above all) come from the environment, as object_store
    /// reads it.
    pub fn build(&self) -> Result<Bucket> {
        self.build_from(AmazonS3Builder::from_env(), GoogleCloudStorageBuilder::from_env())
    }

    /// [`BucketConfig::build`] on S3 and GCS builders that already hold the environment's
    /// settings.
    fn build_from(&self, s3_env: AmazonS3Builder, gcs_env: GoogleCloudStorageBuilder) -> Result<Bucket> {
        let mut credentials = None;
        let mut local = None;
        let (store, description, part_size, multipart, attributes): (
            Arc<dyn ObjectStore>,
            String,
            u64,
            bool,
            Attributes,
        ) = match &self.provider {
            Provider::S3(c) => {
                let (store, search) = self.build_s3(c, s3_env)?;
                credentials = Some(search);
                let part = if c.part_size == 0 { DEFAULT_PART_SIZE } else { c.part_size };
                let mut attrs = Attributes::new();
                for (k, v) in &c.put_user_metadata {
                    attrs.insert(Attribute::Metadata(k.clone().into()), AttributeValue::from(v.clone()));
                }
                (Arc::new(store), format!("s3://{}", c.bucket), part, !c.disable_multipart, attrs)
            }
            Provider::Gcs(c) => {
                let mut b = gcs_env
                    .with_bucket_name(&c.bucket)
                    .with_client_options(self.client_options(&c.http_config)?)
                    .with_retry(retry_config(c.max_retries));
                if !c.service_account.is_empty() {
                    b = b.with_service_account_key(&c.service_account);
                }
                let store = b.build().map_err(|e| self.err("config", e))?;
                credentials = Some(gcs_credential_search());
                let part = if c.chunk_size_bytes == 0 { DEFAULT_PART_SIZE } else { c.chunk_size_bytes };
                (Arc::new(store), format!("gs://{}", c.bucket), part, true, Attributes::new())
            }
            Provider::Azure(c) => {
                let store = self.build_azure(c)?;
                (
                    Arc::new(store),
                    format!("azure://{}/{}", c.storage_account, c.container),
                    DEFAULT_PART_SIZE,
                    true,
                    Attributes::new(),
                )
            }
            Provider::Filesystem(c) => {
                std::fs::create_dir_all(&c.directory)
                    .map_err(|e| self.err("directory", format!("{}: {e}", c.directory)))?;
                // fsync so that a block reported as uploaded survives a machine crash.
                let store = LocalFileSystem::new_with_prefix(&c.directory)
                    .map_err(|e| self.err("directory", e))?
                    .with_fsync(true);
                let store = Arc::new(store);
                local = Some(Arc::clone(&store));
                (store, format!("file://{}", c.directory), DEFAULT_PART_SIZE, true, Attributes::new())
            }
        };
        let store: Arc<dyn ObjectStore> =
            if self.prefix.is_empty() { store } else { Arc::new(PrefixStore::new(store, self.prefix.as_str())) };
        let description = if self.prefix.is_empty() { description } else { format!("{description}/{}", self.prefix) };
        let mut bucket = Bucket::new(store, self.prefix.clone(), description, part_size, multipart, attributes);
        if let Some(local) = local {
            bucket = bucket.with_local_files(local);
        }
        Ok(match credentials {
            Some(search) => bucket.with_credential_search(search),
            None => bucket,
        })
    }

    /// The S3 client, and where it looks for credentials. `env` holds the environment's
    /// settings, used when the config has no keys.
    fn build_s3(&self, c: &S3Config, env: AmazonS3Builder) -> Result<(object_store::aws::AmazonS3, CredentialSearch)> {
        let mut b = if c.access_key.is_empty() {
            // No keys in the file: the environment (AWS_ACCESS_KEY_ID, web identity, instance
            // profile, ...) provides them, as the AWS SDK chain does for Thanos.
            env
        } else {
            let mut b = AmazonS3Builder::new().with_access_key_id(&c.access_key).with_secret_access_key(&c.secret_key);
            if !c.session_token.is_empty() {
                b = b.with_token(&c.session_token);
            }
            b
        };
        b = b
            .with_bucket_name(&c.bucket)
            .with_client_options(self.client_options(&c.http_config)?)
            .with_allow_http(c.insecure)
            .with_retry(retry_config(c.max_retries));
        if !c.region.is_empty() {
            b = b.with_region(&c.region);
        }
        let aws_endpoint = c.endpoint.is_empty() || c.endpoint.ends_with("amazonaws.com");
        let virtual_hosted = match c.bucket_lookup_type {
            BucketLookupType::Auto => aws_endpoint,
            BucketLookupType::VirtualHosted => true,
            BucketLookupType::Path => false,
        };
        b = b.with_virtual_hosted_style_request(virtual_hosted);
        if !c.endpoint.is_empty() {
            let scheme = if c.insecure { "http" } else { "https" };
            // object_store wants the bucket inside a virtual-hosted endpoint URL.
            let url = if virtual_hosted {
                format!("{scheme}://{}.{}", c.bucket, c.endpoint)
            } else {
                format!("{scheme}://{}", c.endpoint)
            };
            b = b.with_endpoint(url);
        }
        match c.sse_config.kind.as_str() {
            "SSE-S3" => {
                let key: AmazonS3ConfigKey =
                    "aws_server_side_encryption".parse().map_err(|e| self.err("sse_config", e))?;
                b = b.with_config(key, "AES256");
            }
            "SSE-KMS" => b = b.with_sse_kms_encryption(&c.sse_config.kms_key_id),
            "SSE-C" => {
                let path = &c.sse_config.encryption_key;
                let key =
                    std::fs::read(path).map_err(|e| self.err("sse_config.encryption_key", format!("{path}: {e}")))?;
                if key.len() != 32 {
                    return Err(self.err(
                        "sse_config.encryption_key",
                        format!("{path}: an SSE-C key is 32 bytes, this file has {}", key.len()),
                    ));
                }
                b = b.with_ssec_encryption(base64::engine::general_purpose::STANDARD.encode(key));
            }
            _ => {}
        }
        if c.trace.enable {
            warn!(source = %self.source, "objstore config: trace.enable is not applied (use RUST_LOG=object_store=debug)");
        }
        if !c.sts_endpoint.is_empty() {
            warn!(source = %self.source, "objstore config: sts_endpoint is not applied");
        }
        let search = CredentialSearch {
            store: "S3",
            searched: "the objstore config (access_key and secret_key) and the environment (AWS_ACCESS_KEY_ID \
                       and AWS_SECRET_ACCESS_KEY; AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN; \
                       AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or AWS_CONTAINER_CREDENTIALS_FULL_URI)",
            endpoint: b
                .get_config_value(&AmazonS3ConfigKey::MetadataEndpoint)
                .unwrap_or_else(|| DEFAULT_AWS_METADATA_ENDPOINT.to_owned()),
            requests: &["/latest/api/token", "/latest/meta-data/iam/security-credentials"],
            note: " The shared credentials file ~/.aws/credentials (and AWS_PROFILE) is not read: put the keys in \
                   the config or in the environment.",
        };
        Ok((b.build().map_err(|e| self.err("config", e))?, search))
    }

    fn build_azure(&self, c: &AzureConfig) -> Result<object_store::azure::MicrosoftAzure> {
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_account(&c.storage_account)
            .with_container_name(&c.container)
            .with_client_options(self.client_options(&c.http_config)?);
        if !c.storage_account_key.is_empty() {
            b = b.with_access_key(&c.storage_account_key);
        }
        if !c.az_tenant_id.is_empty() {
            b = b.with_tenant_id(&c.az_tenant_id);
        }
        if !c.client_secret.is_empty() {
            b = b.with_client_secret(&c.client_secret);
        }
        // A user-assigned managed identity is selected by its client id.
        let client_id = if c.client_id.is_empty() { &c.user_assigned_id } else { &c.client_id };
        if !client_id.is_empty() {
            b = b.with_client_id(client_id);
        }
        if !c.endpoint.is_empty() && c.endpoint != "blob.core.windows.net" {
            b = b.with_endpoint(format!("https://{}.{}", c.storage_account, c.endpoint));
        }
        let retries =
            [c.max_retries, c.pipeline_config.max_tries.saturating_sub(1)].into_iter().find(|&n| n > 0).unwrap_or(0);
        b = b.with_retry(retry_config(retries));
        if c.storage_create_container {
            warn!(source = %self.source, "objstore config: storage_create_container is not applied; create the container beforehand");
        }
        if !c.msi_resource.is_empty() {
            warn!(source = %self.source, "objstore config: msi_resource is not applied; the managed identity's default resource is used");
        }
        b.build().map_err(|e| self.err("config", e))
    }

    /// Maps the `http_config` settings that object_store's client has; logs the others if set.
    fn client_options(&self, h: &HttpConfig) -> Result<ClientOptions> {
        let mut o = ClientOptions::new();
        if let Some(d) = h.idle_conn_timeout.filter(|d| !d.is_zero()) {
            o = o.with_pool_idle_timeout(d);
        }
        if h.max_idle_conns_per_host > 0 {
            o = o.with_pool_max_idle_per_host(h.max_idle_conns_per_host);
        }
        if h.insecure_skip_verify || h.tls_config.insecure_skip_verify {
            o = o.with_allow_invalid_certificates(true);
        }
        if !h.tls_config.ca_file.is_empty() {
            let path = &h.tls_config.ca_file;
            let pem =
                std::fs::read(path).map_err(|e| self.err("http_config.tls_config.ca_file", format!("{path}: {e}")))?;
            let certs = Certificate::from_pem_bundle(&pem)
                .map_err(|e| self.err("http_config.tls_config.ca_file", format!("{path}: {e}")))?;
            for cert in certs {
                o = o.with_root_certificate(cert);
            }
        }
        let mut not_applied = Vec::new();
        let set = |d: &Option<Duration>| d.is_some_and(|d| !d.is_zero());
        for (name, is_set) in [
            ("response_header_timeout", set(&h.response_header_timeout)),
            ("tls_handshake_timeout", set(&h.tls_handshake_timeout)),
            ("expect_continue_timeout", set(&h.expect_continue_timeout)),
            ("max_idle_conns", h.max_idle_conns > 0),
            ("max_conns_per_host", h.max_conns_per_host > 0),
            ("disable_compression", h.disable_compression),
            ("tls_config.cert_file", !h.tls_config.cert_file.is_empty()),
            ("tls_config.key_file", !h.tls_config.key_file.is_empty()),
            ("tls_config.server_name", !h.tls_config.server_name.is_empty()),
        ] {
            if is_set {
                not_applied.push(name);
            }
        }
        if !not_applied.is_empty() {
            warn!(source = %self.source, fields = %not_applied.join(", "), "objstore config: http_config fields not applied");
        }
        Ok(o)
    }
}

/// Where object_store asks for AWS credentials last, unless `AWS_METADATA_ENDPOINT` says
/// otherwise.
const DEFAULT_AWS_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// Where object_store looks for GCS credentials: the config, the environment, gcloud's
/// application default credentials, then the metadata server (by name, then by address, each
/// overridable in the environment as the Google libraries allow).
fn gcs_credential_search() -> CredentialSearch {
    let env = |names: &[&str], default: &str| {
        names.iter().find_map(|n| std::env::var(n).ok()).unwrap_or_else(|| default.to_owned())
    };
    let host = env(&["GCE_METADATA_HOST", "GCE_METADATA_ROOT"], "metadata.google.internal");
    let ip = env(&["GCE_METADATA_IP"], "169.254.169.254");
    CredentialSearch {
        store: "GCS",
        searched: "the objstore config (service_account), the environment (GOOGLE_SERVICE_ACCOUNT naming a key \
                   file, GOOGLE_SERVICE_ACCOUNT_KEY, GOOGLE_APPLICATION_CREDENTIALS) and gcloud's application default \
                   credentials (~/.config/gcloud/application_default_credentials.json)",
        endpoint: format!("http://{host} (then http://{ip})"),
        requests: &["/computeMetadata/v1/instance/service-accounts/default/token"],
        note: "",
    }
}

/// object_store's retry policy with Thanos's `max_retries` (0 keeps the default).
fn retry_config(max_retries: usize) -> RetryConfig {
    let default = RetryConfig::default();
    RetryConfig {
        max_retries: if max_retries == 0 { default.max_retries } else { max_retries },
        backoff: BackoffConfig::default(),
        retry_timeout: default.retry_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_prometheus_durations() {
        let timeout = |value: &str| {
            let yaml = format!("type: S3\nconfig:\n  bucket: b\n  http_config:\n    idle_conn_timeout: {value}\n");
            parse_objstore_config(&yaml, "inline").map(|cfg| match cfg.provider {
                Provider::S3(s3) => s3.http_config.idle_conn_timeout,
                _ => None,
            })
        };
        for (value, want) in [
            ("1m30s", Duration::from_secs(90)),
            ("2m", Duration::from_secs(120)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("100ms", Duration::from_millis(100)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
        ] {
            assert_eq!(timeout(value).ok(), Some(Some(want)), "{value}");
        }
        assert_eq!(timeout("\"\"").ok(), Some(None));
        // Thanos reads these fields as model.Duration, which has no fractions or sub-ms units.
        for bad in ["5", "1x", "m", "1m30", "--1s", "1.5h", "10us", "1s1m"] {
            let err = timeout(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn full_thanos_s3_example_parses() {
        let yaml = r#"type: S3
config:
  bucket: "thanos"
  endpoint: "127.0.0.1:9000"
  region: ""
  disable_dualstack: false
  aws_sdk_auth: false
  access_key: "a"
  insecure: true
  signature_version2: false
  secret_key: "b"
  session_token: ""
  put_user_metadata: {}
  http_config:
    idle_conn_timeout: 1m30s
    response_header_timeout: 2m
    insecure_skip_verify: false
    tls_handshake_timeout: 10s
    expect_continue_timeout: 1s
    max_idle_conns: 100
    max_idle_conns_per_host: 100
    max_conns_per_host: 0
    tls_config:
      ca_file: ""
      cert_file: ""
      key_file: ""
      server_name: ""
      insecure_skip_verify: false
    disable_compression: false
  trace:
    enable: false
  list_objects_version: ""
  bucket_lookup_type: auto
  send_content_md5: true
  disable_multipart: false
  part_size: 67108864
  sse_config:
    type: ""
    kms_key_id: ""
    kms_encryption_context: {}
    encryption_key: ""
  sts_endpoint: ""
  max_retries: 0
prefix: "/tenant-0/prefix0/"
"#;
        let cfg = parse_objstore_config(yaml, "objstore.yml").unwrap();
        assert_eq!(cfg.prefix, "tenant-0/prefix0");
        let Provider::S3(s3) = &cfg.provider else { panic!("not S3: {cfg:?}") };
        assert_eq!(s3.bucket, "thanos");
        assert_eq!(s3.http_config.idle_conn_timeout, Some(Duration::from_secs(90)));
        assert_eq!(s3.part_size, 64 << 20);
        let bucket = cfg.build().unwrap();
        assert_eq!(bucket.part_size(), 64 << 20);
        assert_eq!(bucket.prefix(), "tenant-0/prefix0");
    }

    #[test]
    fn type_is_case_insensitive_and_config_may_be_absent() {
        let err = parse_objstore_config("type: filesystem\n", "inline").unwrap_err().to_string();
        assert!(err.contains("missing field `directory`"), "{err}");
        let cfg = parse_objstore_config("type: filesystem\nconfig:\n  directory: /tmp/x\n", "inline").unwrap();
        assert_eq!(cfg.provider, Provider::Filesystem(FilesystemConfig { directory: "/tmp/x".into() }));
    }
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[tokio::test]
    async fn s3_without_credentials_says_where_it_looked_once() {
        // A metadata endpoint nothing listens on, as off a cloud instance.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap();
        let yaml = "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:1\n  insecure: true\n  max_retries: 1\n";
        let config = parse_objstore_config(yaml, "test").unwrap();
        let env = AmazonS3Builder::new().with_metadata_endpoint(format!("http://{closed}"));
        let bucket = config.build_from(env, GoogleCloudStorageBuilder::new()).unwrap();
        let err = bucket.exists("meta.json").await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::NoCredentials { .. }), "{text}");
        assert!(
            text.starts_with(
                "no S3 credentials found. Looked in the objstore config (access_key and secret_key) and the \
                 environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY;"
            ),
            "{text}"
        );
        assert!(text.contains(&format!("asked the instance metadata endpoint http://{closed}, which gave none (")));
        assert!(text.contains("~/.aws/credentials"), "{text}");
        assert_eq!(text.matches(&closed.to_string()).count(), 1, "the endpoint once: {text}");
        // Retrying cannot conjure credentials.
        assert!(!err.is_transient());
    }

    #[test]
    fn gcs_metadata_failures_read_as_missing_credentials() {
        let search = gcs_credential_search();
        let failed = object_store::Error::Generic {
            store: "GCS",
            source: "Error performing GET http://metadata.google.internal/computeMetadata/v1/instance/\
                     service-accounts/default/token?audience=x in 1s - error sending request for url \
                     (http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token)"
                .into(),
        };
        let text = search.explain(&failed).map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("no GCS credentials found. Looked in the objstore config (service_account), "),
            "{text}"
        );
        assert!(text.contains("GOOGLE_APPLICATION_CREDENTIALS") && text.contains("metadata.google.internal"), "{text}");
        // Other failures keep their own words.
        let other = object_store::Error::NotFound { path: "x".into(), source: "no such object".into() };
        assert!(search.explain(&other).is_none());
    }
}
