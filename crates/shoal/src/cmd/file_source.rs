//! `shoal credential create | list | update` and `shoal file-source create | list | update`:
//! the credentials file sources read with (JOB's `create_credential` …), and the file
//! sources `shoal push --from-source CODE:path` reads from (JOB's `create_file_source` …).
//!
//! A secret given as a flag shows in the process list; `--secret-stdin` reads it (the
//! password, or the secret key) from the first line of standard input instead.

use std::io::BufRead;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(clap::Args, Debug, Default)]
pub struct SecretArgs {
    /// The credential's user name (USERNAME_PASSWORD).
    #[arg(long = "user", value_name = "NAME")]
    pub username: Option<String>,
    /// Password (PASSWORD, USERNAME_PASSWORD); prefer --secret-stdin.
    #[arg(long)]
    pub password: Option<String>,
    /// Access key / app id (APP_ID_SECRET_KEY).
    #[arg(long)]
    pub access_key: Option<String>,
    /// Secret key (APP_ID_SECRET_KEY, SECRET_KEY); prefer --secret-stdin.
    #[arg(long)]
    pub secret_key: Option<String>,
    /// Read the password (PASSWORD, USERNAME_PASSWORD) or the secret key (the other types)
    /// from the first line of standard input.
    #[arg(long)]
    pub secret_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// The business's credentials (never their secrets).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a credential; prints its id (for `shoal file-source create --credential`).
    Create {
        /// A name to know it by.
        #[arg(long)]
        name: String,
        /// APP_ID_SECRET_KEY, PASSWORD, USERNAME_PASSWORD or SECRET_KEY.
        #[arg(long = "type", value_name = "TYPE")]
        kind: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a credential: its name, description, or secret (give all fields of its type).
    Update {
        /// The credential's id (`shoal credential list`).
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new type (then give every secret field of that type).
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum FileSourceCommand {
    /// The business's file sources.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a file source: a bkrepo (BLUEKING_ARTIFACTORY, --base-url) or an S3-compatible store
    /// (S3, --endpoint, --region, --bucket), read with a credential.
    Create {
        /// Its code (a letter, then letters, digits and _; never changes).
        code: String,
        /// A display name (default: the code).
        #[arg(long)]
        alias: Option<String>,
        /// BLUEKING_ARTIFACTORY or S3.
        #[arg(long = "type", value_name = "TYPE", default_value = "BLUEKING_ARTIFACTORY")]
        kind: String,
        /// bkrepo's base URL (files are project/repo/path).
        #[arg(long)]
        base_url: Option<String>,
        /// S3 endpoint (files are bucket/key).
        #[arg(long)]
        endpoint: Option<String>,
        /// S3 region (signing).
        #[arg(long)]
        region: Option<String>,
        /// Only this bucket may be read.
        #[arg(long)]
        bucket: Option<String>,
        /// Id of the credential to read with (`shoal credential create`).
        #[arg(long)]
        credential: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a file source (found by its code).
    Update {
        /// The file source's code.
        code: String,
        /// A new display name.
        #[arg(long)]
        alias: Option<String>,
        /// BLUEKING_ARTIFACTORY or S3.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// A new bkrepo base URL.
        #[arg(long)]
        base_url: Option<String>,
        /// A new S3 endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// A new S3 region.
        #[arg(long)]
        region: Option<String>,
        /// Only this bucket may be read (S3).
        #[arg(long)]
        bucket: Option<String>,
        /// Id of the credential to read with.
        #[arg(long)]
        credential: Option<String>,
        /// Turn it off (reads fail) or on.
        #[arg(long)]
        enable: Option<bool>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn scope(biz: i64) -> Value {
    json!({"bk_scope_type": "biz", "bk_scope_id": biz.to_string()})
}

/// Fills the secret fields of a create or update body.
fn put_secret(body: &mut Value, kind: Option<&str>, s: &SecretArgs) -> anyhow::Result<()> {
    let mut password = s.password.clone();
    let mut secret_key = s.secret_key.clone();
    if s.secret_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\n', '\r']).to_string();
        anyhow::ensure!(!line.is_empty(), "--secret-stdin: standard input has no secret");
        match kind.map(str::to_ascii_uppercase).as_deref() {
            Some("PASSWORD" | "USERNAME_PASSWORD") => password = Some(line),
            _ => secret_key = Some(line),
        }
    }
    for (field, v) in [
        ("credential_username", &s.username),
        ("credential_password", &password),
        ("credential_access_key", &s.access_key),
        ("credential_secret_key", &secret_key),
    ] {
        if let Some(v) = v {
            body[field] = json!(v);
        }
    }
    Ok(())
}

fn access_params(kind: &str, base_url: Option<String>, endpoint: Option<String>, region: Option<String>, bucket: Option<String>) -> Value {
    let mut p = json!({});
    if kind.eq_ignore_ascii_case("S3") {
        if let Some(e) = endpoint.or(base_url) {
            p["endpoint"] = json!(e);
        }
        if let Some(r) = region {
            p["region"] = json!(r);
        }
        if let Some(b) = bucket {
            p["bucket"] = json!(b);
        }
    } else if let Some(u) = base_url.or(endpoint) {
        p["base_url"] = json!(u);
    }
    p
}

async fn list(r: &client_config::Resolved, api: &str) -> anyhow::Result<Vec<Value>> {
    let mut body = scope(r.biz);
    body["length"] = json!(1000);
    let page: Value = r.client.call(api, body).await?;
    Ok(page["data"].as_array().cloned().unwrap_or_default())
}

pub async fn credential(cmd: CredentialCommand) -> anyhow::Result<u8> {
    match cmd {
        CredentialCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let all = list(&r, "get_credential_list").await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(0);
            }
            if all.is_empty() {
                println!("business {} has no credential yet: shoal credential create --name … --type …", r.biz);
                return Ok(0);
            }
            println!("{:<34} {:<24} {:<18} DESCRIPTION", "ID", "NAME", "TYPE");
            for c in &all {
                println!(
                    "{:<34} {:<24} {:<18} {}",
                    c["id"].as_str().unwrap_or(""),
                    c["name"].as_str().unwrap_or(""),
                    c["type"].as_str().unwrap_or(""),
                    c["description"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        CredentialCommand::Create { name, kind, description, secret, client } => {
            let r = client_config::resolve(&client)?;
            let mut body = scope(r.biz);
            body["name"] = json!(name);
            body["type"] = json!(kind);
            body["description"] = json!(description.unwrap_or_default());
            put_secret(&mut body, Some(&kind), &secret)?;
            let c: Value = r.client.call("create_credential", body).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!("credential {} created: {}", c["name"].as_str().unwrap_or(""), c["id"].as_str().unwrap_or(""));
            }
            Ok(0)
        }
        CredentialCommand::Update { id, name, kind, description, secret, client } => {
            let r = client_config::resolve(&client)?;
            let mut body = scope(r.biz);
            body["id"] = json!(id);
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let known = match &kind {
                Some(k) => Some(k.clone()),
                None => list(&r, "get_credential_list")
                    .await?
                    .iter()
                    .find(|c| c["id"] == id.as_str())
                    .and_then(|c| c["type"].as_str().map(String::from)),
            };
            if let Some(k) = &kind {
                body["type"] = json!(k);
            }
            put_secret(&mut body, known.as_deref(), &secret)?;
            let c: Value = r.client.call("update_credential", body).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!("credential {} updated", c["id"].as_str().unwrap_or(""));
            }
            Ok(0)
        }
    }
}

pub async fn file_source(cmd: FileSourceCommand) -> anyhow::Result<u8> {
    match cmd {
        FileSourceCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let all = list(&r, "get_file_source_list").await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(0);
            }
            if all.is_empty() {
                println!("business {} has no file source yet: shoal file-source create CODE --base-url … --credential …", r.biz);
                return Ok(0);
            }
            println!("{:<6} {:<20} {:<22} {:<8} {:<34} URL", "ID", "CODE", "TYPE", "ENABLED", "CREDENTIAL");
            for s in &all {
                let p = &s["access_params"];
                let url = p["base_url"].as_str().or(p["endpoint"].as_str()).unwrap_or("");
                let url = match p["bucket"].as_str() {
                    Some(b) => format!("{url} (bucket {b})"),
                    None => url.to_string(),
                };
                println!(
                    "{:<6} {:<20} {:<22} {:<8} {:<34} {}",
                    s["id"],
                    s["code"].as_str().unwrap_or(""),
                    s["type"].as_str().unwrap_or(""),
                    if s["enable"].as_bool().unwrap_or(true) { "yes" } else { "no" },
                    s["credential_id"].as_str().unwrap_or(""),
                    url
                );
            }
            Ok(0)
        }
        FileSourceCommand::Create { code, alias, kind, base_url, endpoint, region, bucket, credential, client } => {
            let r = client_config::resolve(&client)?;
            let mut body = scope(r.biz);
            body["code"] = json!(code);
            body["alias"] = json!(alias.unwrap_or_else(|| code.clone()));
            body["type"] = json!(kind);
            body["access_params"] = access_params(&kind, base_url, endpoint, region, bucket);
            body["credential_id"] = json!(credential);
            let s: Value = r.client.call("create_file_source", body).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("file source {code} (#{}) created: shoal push --from-source {code}:PATH …", s["id"]);
            }
            Ok(0)
        }
        FileSourceCommand::Update { code, alias, kind, base_url, endpoint, region, bucket, credential, enable, client } => {
            let r = client_config::resolve(&client)?;
            let mut body = scope(r.biz);
            body["code"] = json!(code);
            if let Some(a) = alias {
                body["alias"] = json!(a);
            }
            if base_url.is_some() || endpoint.is_some() || region.is_some() || bucket.is_some() {
                let current = list(&r, "get_file_source_list").await?;
                let now = current.iter().find(|s| s["code"] == code.as_str());
                let k = kind.clone().or_else(|| now.and_then(|s| s["type"].as_str().map(String::from))).unwrap_or_default();
                let mut p = now.map(|s| s["access_params"].clone()).filter(Value::is_object).unwrap_or_else(|| json!({}));
                for (key, v) in access_params(&k, base_url, endpoint, region, bucket).as_object().into_iter().flatten() {
                    p[key] = v.clone();
                }
                body["access_params"] = p;
            }
            if let Some(k) = kind {
                body["type"] = json!(k);
            }
            if let Some(c) = credential {
                body["credential_id"] = json!(c);
            }
            if let Some(e) = enable {
                body["enable"] = json!(e);
            }
            let s: Value = r.client.call("update_file_source", body).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("file source {code} (#{}) updated", s["id"]);
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_params_follow_the_type() {
        assert_eq!(access_params("BLUEKING_ARTIFACTORY", Some("http://r".into()), None, None, None), json!({"base_url": "http://r"}));
        assert_eq!(
            access_params("s3", None, Some("http://m".into()), Some("eu".into()), Some("b".into())),
            json!({"endpoint": "http://m", "region": "eu", "bucket": "b"})
        );
    }
}
