//! Objstore config errors name the file, the field and (where the parser knows it) the line.

use strata_shipper::config::{BucketLookupType, Provider};
use strata_shipper::parse_objstore_config;

fn err(yaml: &str) -> String {
    match parse_objstore_config(yaml, "conf/objstore.yml") {
        Ok(cfg) => panic!("accepted invalid config {yaml:?}: {cfg:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} does not mention {p:?}");
    }
}

#[test]
fn unknown_type() {
    let e = err("type: S4\nconfig:\n  bucket: b\n");
    assert_mentions(&e, &["conf/objstore.yml", "unknown type \"S4\"", "\"type\"", "S3, GCS, AZURE, FILESYSTEM"]);
}

#[test]
fn unknown_field_names_field_provider_and_line() {
    let e = err("type: S3\nconfig:\n  bucket: b\n  endpoint: x:9000\n  buckt: c\n");
    assert_mentions(
        &e,
        &[
            "objstore config conf/objstore.yml",
            "S3 config",
            "unknown field `buckt`",
            "expected one of",
            "`bucket`",
            "line 5",
        ],
    );
    let e = err("type: S3\nconfig:\n  bucket: b\n  http_config:\n    idle_timeout: 1m\n");
    assert_mentions(&e, &["S3 config.http_config", "unknown field `idle_timeout`", "line 5"]);
    let e = err("type: FILESYSTEM\nconfig:\n  directory: /x\nprefx: a\n");
    assert_mentions(&e, &["conf/objstore.yml", "unknown field `prefx`", "line 4"]);
    let e = err("type: AZURE\nconfig:\n  storage_account: a\n  container: c\n  account_key: k\n");
    assert_mentions(&e, &["AZURE config", "unknown field `account_key`"]);
}

#[test]
fn missing_and_empty_required_fields() {
    let e = err("type: S3\nconfig:\n  endpoint: x:9000\n");
    assert_mentions(&e, &["conf/objstore.yml", "S3 config", "missing field `bucket`"]);
    let e = err("type: S3\nconfig:\n  bucket: \"\"\n");
    assert_mentions(&e, &["conf/objstore.yml", "S3 config", "bucket", "must not be empty"]);
    let e = err("type: GCS\nconfig: {}\n");
    assert_mentions(&e, &["GCS config", "missing field `bucket`"]);
    let e = err("type: AZURE\nconfig:\n  storage_account: a\n");
    assert_mentions(&e, &["AZURE config", "missing field `container`"]);
    let e = err("config:\n  directory: /x\n");
    assert_mentions(&e, &["conf/objstore.yml", "missing field `type`"]);
}

#[test]
fn wrong_value_types() {
    let e = err("type: S3\nconfig:\n  bucket: b\n  part_size: lots\n");
    assert_mentions(&e, &["S3 config.part_size", "invalid type", "line 4"]);
    let e = err("type: S3\nconfig:\n  bucket: b\n  insecure: maybe\n");
    assert_mentions(&e, &["S3 config.insecure", "line 4"]);
    let e = err("type: S3\nconfig:\n  bucket: b\n  bucket_lookup_type: dns\n");
    assert_mentions(&e, &["S3 config.bucket_lookup_type", "unknown variant `dns`", "`virtual-hosted`", "line 4"]);
    let e = err("type: S3\nconfig:\n  bucket: b\n  http_config:\n    idle_conn_timeout: soon\n");
    // Prometheus's model.ParseDuration message, as Thanos reports it.
    assert_mentions(
        &e,
        &["S3 config.http_config.idle_conn_timeout", "not a valid duration string: \"soon\"", "line 5"],
    );
    let e = err("type: [S3]\n");
    assert_mentions(&e, &["conf/objstore.yml", "type", "line 1"]);
}

#[test]
fn unreadable_yaml_reports_the_line() {
    let e = err("type: S3\nconfig:\n  bucket: b\n   endpoint: [x\n");
    assert_mentions(&e, &["conf/objstore.yml", "line 4"]);
    let e = err("type: S3\nconfig:\n\tbucket: b\n");
    assert_mentions(&e, &["conf/objstore.yml", "line 3"]);
    let e = err("");
    assert_mentions(&e, &["conf/objstore.yml"]);
}

#[test]
fn unsupported_settings_are_refused_by_name() {
    for (field, yaml) in [
        ("signature_version2", "signature_version2: true"),
        ("list_objects_version", "list_objects_version: v1"),
        ("sse_config.type", "sse_config:\n    type: SSE-X"),
        ("sse_config.kms_key_id", "sse_config:\n    type: SSE-KMS"),
        ("part_size", "part_size: 1024"),
        ("endpoint", "endpoint: http://127.0.0.1:9000"),
        ("secret_key", "access_key: a"),
    ] {
        let e = err(&format!("type: S3\nconfig:\n  bucket: b\n  {yaml}\n"));
        assert_mentions(&e, &["conf/objstore.yml", "S3 config", field]);
    }
    let e = err("type: GCS\nconfig:\n  bucket: b\n  use_grpc: true\n");
    assert_mentions(&e, &["GCS config", "use_grpc"]);
    let e = err("type: AZURE\nconfig:\n  storage_account: a\n  container: c\n  storage_connection_string: x\n");
    assert_mentions(&e, &["AZURE config", "storage_connection_string"]);
}

#[test]
fn valid_configs_of_every_type_build() {
    let s3 = parse_objstore_config(
        "type: s3\nconfig:\n  bucket: b\n  endpoint: minio.local:9000\n  bucket_lookup_type: path\n  disable_multipart: true\n  \
         put_user_metadata:\n    team: obs\n",
        "inline",
    )
    .expect("s3");
    let Provider::S3(c) = &s3.provider else { panic!("{s3:?}") };
    assert_eq!(c.bucket_lookup_type, BucketLookupType::Path);
    assert_eq!(c.put_user_metadata["team"], "obs");
    assert!(s3.build().is_ok());

    let azure = parse_objstore_config(
        "type: AZURE\nconfig:\n  storage_account: acct\n  storage_account_key: a2V5\n  container: blocks\n  endpoint: blob.core.chinacloudapi.cn\n",
        "inline",
    )
    .expect("azure");
    let b = azure.build().expect("azure bucket");
    assert_eq!(b.to_string(), "azure://acct/blocks");

    let gcs = parse_objstore_config("type: GCS\nconfig:\n  bucket: blocks\nprefix: /a/b/\n", "inline").expect("gcs");
    let b = gcs.build().expect("gcs bucket");
    assert_eq!(b.prefix(), "a/b");
    assert_eq!(b.to_string(), "gs://blocks/a/b");
}
