//! Errors as an operator reads them: what went wrong and what to do next, in English, or in
//! Chinese when `--ui-lang zh`, `SHOAL_LANG=zh` or the locale (`LC_ALL`, `LC_MESSAGES`, `LANG`) says so. A JOB
//! error keeps its code (`error 1243053: …`). The API itself answers JOB's own messages.

use std::sync::{Mutex, OnceLock};

use shoal_client::ClientError;
use shoal_proto::ErrorCode;

/// Language of the CLI's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

static LANG: OnceLock<Lang> = OnceLock::new();
/// The server URL, business and app code (none for a user's token) of the last resolved
/// client settings.
static CALL: Mutex<Option<(String, i64, Option<String>)>> = Mutex::new(None);

/// The language from the flag, else `SHOAL_LANG`, else the first locale variable set (POSIX
/// order).
pub fn pick_lang(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Lang {
    let v = flag
        .map(str::to_string)
        .or_else(|| ["SHOAL_LANG", "LC_ALL", "LC_MESSAGES", "LANG"].iter().find_map(|k| env(k).filter(|v| !v.is_empty())));
    match v {
        Some(v) if v.trim().to_ascii_lowercase().starts_with("zh") => Lang::Zh,
        _ => Lang::En,
    }
}

/// Whether `v` names a language of the messages (`zh`, `zh_CN`, `en-US`, …) rather than a
/// script's.
pub fn is_ui_lang(v: &str) -> bool {
    let v = v.trim().to_ascii_lowercase();
    ["zh", "en"].iter().any(|l| v == *l || v.starts_with(&format!("{l}_")) || v.starts_with(&format!("{l}-")))
}

pub fn set_lang(l: Lang) {
    let _ = LANG.set(l);
}

fn lang() -> Lang {
    LANG.get().copied().unwrap_or_default()
}

/// Remember where calls go and as which app, for the hints.
pub fn set_call(url: &str, biz: i64, app: Option<&str>) {
    if let Ok(mut c) = CALL.lock() {
        *c = Some((url.trim_end_matches('/').to_string(), biz, app.map(str::to_string)));
    }
}

fn call() -> (String, i64) {
    CALL.lock()
        .ok()
        .and_then(|c| c.as_ref().map(|(u, b, _)| (u.clone(), *b)))
        .unwrap_or_else(|| (crate::client_config::DEFAULT_URL.to_string(), 1))
}

/// `[x]` in a JOB message: the first bracketed word.
fn bracketed(message: &str) -> Option<&str> {
    let start = message.find('[')? + 1;
    let end = start + message[start..].find(']')?;
    Some(&message[start..end])
}

/// Who a 9900403 names (`User (alice)`, or `User (app:ci)` for an app acting as itself), in
/// English and Chinese, and the commands that grant them a role (the first, and another when
/// it is not certain). A person named while calling with app credentials is one a trusted
/// gateway app acts for: the grant is theirs if they are a Shoal user, else the app's.
fn grantee(message: &str) -> (String, String, String, Option<String>) {
    let name = message.split_once("User (").and_then(|(_, rest)| rest.split_once(')')).map(|(n, _)| n.trim()).unwrap_or("");
    let app = CALL.lock().ok().and_then(|c| c.as_ref().and_then(|c| c.2.clone()));
    match (name.strip_prefix("app:"), app) {
        (Some(code), _) => (format!("app {code}"), format!("应用 {code} "), format!("shoal app grant {code}"), None),
        (None, _) if name.is_empty() => ("the caller".into(), "调用方".into(), "shoal app grant APP".into(), None),
        (None, Some(code)) => (
            format!("user {name} (through app {code})"),
            format!("用户 {name}（经应用 {code}）"),
            format!("shoal user grant {name}"),
            Some(format!("shoal app grant {code}")),
        ),
        (None, None) => (format!("user {name}"), format!("用户 {name} "), format!("shoal user grant {name}"), None),
    }
}

/// The part after the last `: ` of a JOB message (the list it names).
fn tail(message: &str) -> &str {
    message.rsplit_once(": ").map_or(message, |(_, t)| t).trim()
}

/// One error, explained. Errors that are not the client's are printed as they are.
pub fn explain(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ClientError>() {
        Some(c) => client_error(c, lang()),
        None => format!("{e:#}"),
    }
}

fn client_error(e: &ClientError, l: Lang) -> String {
    let (url, biz) = call();
    let zh = l == Lang::Zh;
    match e {
        ClientError::Transport(m) => transport(m, &url, zh),
        ClientError::Validation(m) if m.contains("must look like http") => {
            if zh {
                format!("{m} —— 服务器地址须带协议，例如 --url http://127.0.0.1:8080")
            } else {
                format!("{m} — give the scheme, e.g. --url http://127.0.0.1:8080")
            }
        }
        ClientError::BusinessNotFound { job_code, message, .. } => {
            let code = job_code.unwrap_or(ErrorCode::APP_NOT_EXIST.0);
            if zh {
                format!("错误 {code}：业务 {biz} 不存在或没有已注册的主机（{message}）—— 用 --biz 指定业务，或用 'shoal host list --all-biz' 查看主机所在业务")
            } else {
                format!("error {code}: business {biz} does not exist or has no registered host ({message}) — give the business with --biz; 'shoal host list --all-biz' shows where hosts are")
            }
        }
        ClientError::Api { code, message, .. } => api(*code, message, biz, zh),
        other => other.to_string(),
    }
}

fn transport(m: &str, url: &str, zh: bool) -> String {
    let lower = m.to_ascii_lowercase();
    if let Some(rest) = m.strip_prefix("cannot connect to ") {
        let cause = rest.split_once(": ").map_or(rest, |(_, c)| c);
        let cause = if lower.contains("connection refused") { "connection refused" } else { cause };
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("ssl") {
            return if zh {
                format!("无法与 {url} 建立安全连接：{cause} —— 服务器证书由私有 CA 签发时用 --ca CA.pem（或 SHOAL_CA）指定")
            } else {
                format!("cannot reach the server at {url}: {cause} — if its certificate is signed by a private CA, give it with --ca CA.pem (or SHOAL_CA)")
            };
        }
        return if zh {
            format!("无法连接服务器 {url}：{cause} —— `shoal server` 是否在运行？地址可用 --url 或 SHOAL_URL 指定")
        } else {
            format!("cannot reach the server at {url}: {cause} — is `shoal server` running? (set the address with --url or SHOAL_URL)")
        };
    }
    if lower.contains("certificate") {
        return if zh {
            format!("{m} —— 服务器证书由私有 CA 签发时用 --ca CA.pem（或 SHOAL_CA）指定")
        } else {
            format!("{m} — if the server's certificate is signed by a private CA, give it with --ca CA.pem (or SHOAL_CA)")
        };
    }
    if m.starts_with("no answer from") {
        return if zh {
            format!("{m} —— 服务器繁忙或网络不通，请稍后重试")
        } else {
            format!("{m} — the server is busy or the network is down; try again")
        };
    }
    m.to_string()
}

fn api(code: i32, message: &str, biz: i64, zh: bool) -> String {
    let c = ErrorCode(code);
    let (en, cn): (String, String) = match c {
        ErrorCode::HOST_ID_NOT_EXIST => (
            format!("host {} is not registered in business {biz} — list hosts with 'shoal host list --biz {biz}'", tail(message)),
            format!("主机 {} 未在业务 {biz} 中注册 —— 用 'shoal host list --biz {biz}' 查看主机", tail(message)),
        ),
        ErrorCode::IP_NOT_EXIST => (
            format!("no registered host has the address {} in business {biz} — list hosts with 'shoal host list --biz {biz}'", tail(message)),
            format!("业务 {biz} 中没有地址为 {} 的已注册主机 —— 用 'shoal host list --biz {biz}' 查看主机", tail(message)),
        ),
        ErrorCode::HOST_INVALID => (
            format!("some hosts are not in business {biz} ({message}) — list its hosts with 'shoal host list --biz {biz}', or give another --biz"),
            format!("部分主机不属于业务 {biz}（{message}）—— 用 'shoal host list --biz {biz}' 查看，或换一个 --biz"),
        ),
        ErrorCode::SERVER_EMPTY | ErrorCode::STEP_TARGET_EMPTY => (
            format!("no host to run on ({message}) — check the targets with 'shoal host list --biz {biz}'"),
            format!("没有可执行的主机（{message}）—— 用 'shoal host list --biz {biz}' 检查目标"),
        ),
        ErrorCode::ACCOUNT_NOT_EXIST => {
            let a = bracketed(message).unwrap_or("?");
            (
                format!("there is no execution account {a:?} in business {biz} — create it with 'shoal account create OS_USER --alias {a} --biz {biz}', or pick one from 'shoal account list --biz {biz}' with --account"),
                format!("业务 {biz} 中没有执行账号 {a:?} —— 用 'shoal account create 系统用户 --alias {a} --biz {biz}' 创建，或用 --account 选择 'shoal account list --biz {biz}' 中的账号"),
            )
        }
        ErrorCode::ACCOUNT_NO_PERMISSION => {
            let a = bracketed(message).unwrap_or("?");
            (
                format!("this app may not run scripts as account {a:?} in business {biz} — an admin grants it with 'shoal app grant-account APP --alias {a} --biz {biz}'"),
                format!("当前应用无权以账号 {a:?} 在业务 {biz} 中执行 —— 请管理员执行 'shoal app grant-account 应用 --alias {a} --biz {biz}' 授权"),
            )
        }
        ErrorCode::SERVICE_AUTH_FAIL | ErrorCode::MISSING_APP_CODE | ErrorCode::MISSING_USER_INFO => (
            "the server did not accept these credentials — check the app code and secret (SHOAL_APP_CODE, SHOAL_APP_SECRET) or the token (SHOAL_TOKEN); 'shoal config show' prints what is used".to_string(),
            "服务器不接受当前凭据 —— 检查应用编码和密钥（SHOAL_APP_CODE、SHOAL_APP_SECRET）或令牌（SHOAL_TOKEN）；'shoal config show' 显示当前设置".to_string(),
        ),
        ErrorCode::BK_PERMISSION_DENIED | ErrorCode::USER_ACCESS_APP_FORBIDDEN => {
            let (who_en, who_zh, grant, other) = grantee(message);
            let (or_en, or_zh) = match other {
                Some(o) => (format!(" (or, if they are no Shoal user, '{o} --role run --biz {biz}')"), format!("（若其不是 Shoal 用户：'{o} --role run --biz {biz}'）")),
                None => (String::new(), String::new()),
            };
            (
                format!("{who_en} has no role that allows this in business {biz} — an admin grants one with '{grant} --role run --biz {biz}'{or_en} (roles: run, manage, approve, admin)"),
                format!("{who_zh}在业务 {biz} 中没有执行此操作的角色 —— 请管理员执行 '{grant} --role run --biz {biz}'{or_zh} 授权（角色：run、manage、approve、admin）"),
            )
        }
        ErrorCode::APP_NOT_EXIST => (
            format!("business {biz} does not exist — give the business with --biz; 'shoal host list --all-biz' shows where hosts are"),
            format!("业务 {biz} 不存在 —— 用 --biz 指定业务；'shoal host list --all-biz' 显示主机所在业务"),
        ),
        ErrorCode::TASK_INSTANCE_NOT_EXIST => (
            format!("no such job in business {biz} — list recent jobs with 'shoal job list --biz {biz}'"),
            format!("业务 {biz} 中没有这个作业 —— 用 'shoal job list --biz {biz}' 查看最近的作业"),
        ),
        ErrorCode::SCRIPT_NOT_EXIST | ErrorCode::SCRIPT_VERSION_NOT_EXIST | ErrorCode::SCRIPT_NOT_IN_APP => (
            format!("no such script or version in business {biz} — list scripts with 'shoal script list --biz {biz}'"),
            format!("业务 {biz} 中没有这个脚本或版本 —— 用 'shoal script list --biz {biz}' 查看"),
        ),
        ErrorCode::SCRIPT_DISABLED | ErrorCode::SCRIPT_VERSION_ILLEGAL | ErrorCode::SCRIPT_NOT_EXECUTABLE_STATUS => (
            format!("that script version cannot run ({message}) — publish a version with 'shoal script publish SCRIPT_ID VERSION_ID'"),
            format!("该脚本版本不能执行（{message}）—— 用 'shoal script publish 脚本ID 版本ID' 上线一个版本"),
        ),
        ErrorCode::DANGEROUS_SCRIPT_FORBIDDEN => (
            "the script matches a dangerous-command rule and was not run — change the script, or ask an admin ('shoal danger builtin list')".to_string(),
            "脚本命中高危语句规则，未执行 —— 修改脚本，或联系管理员（'shoal danger builtin list'）".to_string(),
        ),
        ErrorCode::NOT_IN_CONFIRM_USER_LIST => (
            "only the step's confirmers may confirm or reject it — 'shoal job watch JOB_ID' shows who they are".to_string(),
            "只有该步骤的确认人可以确认或驳回 —— 'shoal job watch 作业ID' 显示确认人".to_string(),
        ),
        ErrorCode::RUNNING_JOB_EXCEED_SCOPE_QUOTA | ErrorCode::RUNNING_JOB_EXCEED_APP_QUOTA | ErrorCode::RUNNING_JOB_EXCEED_SYSTEM_QUOTA => (
            format!("too many jobs are running ({message}) — wait for some to finish ('shoal job list --biz {biz}') and try again"),
            format!("正在执行的作业过多（{message}）—— 等待部分作业结束（'shoal job list --biz {biz}'）后重试"),
        ),
        ErrorCode::INVALID_ROLLING_EXPR | ErrorCode::EXCEED_MAX_ROLLING_BATCHES => (
            format!("{message} — --batch takes sizes like 10%, 5, or \"1 10% +5\""),
            format!("{message} —— --batch 的写法如 10%、5 或 \"1 10% +5\""),
        ),
        _ => (message.to_string(), message.to_string()),
    };
    if zh {
        format!("错误 {code}：{cn}")
    } else {
        format!("error {code}: {en}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_locale_or_the_flag_picks_the_language() {
        let env =
            |vars: &'static [(&'static str, &'static str)]| move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(pick_lang(None, &env(&[])), Lang::En);
        assert_eq!(pick_lang(None, &env(&[("LANG", "zh_CN.UTF-8")])), Lang::Zh);
        assert_eq!(pick_lang(None, &env(&[("LANG", "zh_CN.UTF-8"), ("LC_ALL", "C")])), Lang::En);
        assert_eq!(pick_lang(Some("zh"), &env(&[("LANG", "en_US.UTF-8")])), Lang::Zh);
        assert_eq!(pick_lang(Some("en"), &env(&[("LC_ALL", "zh_TW")])), Lang::En);
        assert_eq!(pick_lang(None, &env(&[("SHOAL_LANG", "zh"), ("LC_ALL", "C")])), Lang::Zh);
        assert!(is_ui_lang("zh") && is_ui_lang("zh_CN") && is_ui_lang("en-US") && !is_ui_lang("python") && !is_ui_lang("zsh"));
    }

    #[test]
    fn job_errors_keep_their_code_and_say_what_to_do() {
        let e = ClientError::Api { code: 1243053, message: "hostIds not exist in CMDB: 12".into(), http_status: 200, request_id: None };
        let en = client_error(&e, Lang::En);
        assert!(en.starts_with("error 1243053: host 12 is not registered in business"), "{en}");
        assert!(en.contains("shoal host list --biz"), "{en}");
        assert!(!en.contains("CMDB"), "{en}");
        let zh = client_error(&e, Lang::Zh);
        assert!(zh.starts_with("错误 1243053：主机 12 未在业务"), "{zh}");
        let e = ClientError::Api { code: 1244003, message: "Account [root] does not exist".into(), http_status: 200, request_id: None };
        assert!(client_error(&e, Lang::En).contains("shoal account create OS_USER --alias root"));
        let e = ClientError::Transport("cannot connect to http://127.0.0.1:9: tcp connect error: Connection refused (os error 111)".into());
        let en = client_error(&e, Lang::En);
        assert!(en.starts_with("cannot reach the server at ") && en.contains(": connection refused — is `shoal server` running?"), "{en}");
        let e = ClientError::Api { code: 1249999, message: "something else".into(), http_status: 200, request_id: None };
        assert_eq!(client_error(&e, Lang::En), "error 1249999: something else");
    }
}
