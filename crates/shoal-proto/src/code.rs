//! JOB's error codes (`ErrorCode.java`) with the message texts of its i18n bundles.
//! `{0}`, `{1}` … are filled from the error's arguments.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub i32);

macro_rules! codes {
    ($($name:ident = $v:literal, $zh:literal, $en:literal;)*) => {
        impl ErrorCode {
            $(pub const $name: ErrorCode = ErrorCode($v);)*

            /// The message template in the caller's language (`Blueking-Language`).
            pub fn template(self, lang: Lang) -> &'static str {
                match (self.0, lang) {
                    $(($v, Lang::Zh) => $zh, ($v, Lang::En) => $en,)*
                    _ => match lang { Lang::Zh => "未知错误", Lang::En => "Unknown error" },
                }
            }
        }
    };
}

codes! {
    OK = 0, "成功", "Success";
    SERVICE_UNAVAILABLE = 1240001, "服务不可用", "Service Unavailable";
    INTERNAL_ERROR = 1240002, "内部服务器异常", "Internal Server Error";
    FAIL_TO_FIND_HOST_BY_DYNAMIC_GROUP = 1211003, "根据动态分组ID查找主机失败，分组ID:{0}，原因:{1}", "Fail to find host by dynamic group, id:{0}, reason:{1}";
    BAD_REQUEST = 1240003, "错误的请求", "Bad Request";
    SERVICE_AUTH_FAIL = 1240005, "服务认证失败", "Service auth fail";
    MISSING_PARAM = 1241001, "请求参数缺失", "Missing request parameters";
    ILLEGAL_PARAM = 1241002, "请求参数不合法", "Invalid request parameters";
    UNSUPPORTED_OPERATION = 1241003, "不支持的操作", "Unsupported operation";
    MISSING_PARAM_WITH_NAME = 1241004, "请求参数[{0}]缺失", "Missing request parameter [{0}]";
    ILLEGAL_PARAM_WITH_NAME = 1241005, "请求参数[{0}]不合法", "Invalid request parameter [{0}]";
    MISSING_OR_ILLEGAL_PARAM = 1241006, "请求参数缺失或不合法", "Missing or invalid request parameter";
    MISSING_OR_ILLEGAL_PARAM_WITH_NAME = 1241007, "请求参数[{0}]缺失或不合法", "Missing or invalid request parameter [{0}]";
    ILLEGAL_PARAM_WITH_REASON = 1241010, "请求参数[{0}]不合法，原因：{1}", "Invalid request parameter [{0}], reason: {1}";
    REPEAT_START_JOB = 1241015, "不支持的操作，请勿重复启动作业，job_instance_id={0}", "Unsupported operation, do not repeat start the job, job_instance_id={0}";
    BODY_FORMAT_ERROR = 1241022, "HTTP请求体格式不正确", "The format of the HTTP request body is incorrect";
    SCRIPT_NOT_EXIST = 1243001, "脚本不存在", "Script not exist";
    SCRIPT_NAME_DUPLICATE = 1243002, "脚本名称已存在，请重新输入", "Script name already exists";
    SCRIPT_NOT_IN_APP = 1243004, "脚本不属于该业务", "Script is not under this business";
    ACCOUNT_ALIAS_EXIST = 1243007, "账号别名已存在", "The account alias already exists";
    TASK_PLAN_NOT_EXIST = 1243009, "执行方案不存在", "Job plan does not exist";
    DELETE_REF_ACCOUNT_FORBIDDEN = 1243014, "账号被引用，禁止删除", "Account is referenced and cannot be deleted";
    SCRIPT_VERSION_ILLEGAL = 1243017, "引用的脚本未上线或被删除", "Script version not online or deleted";
    SCRIPT_VERSION_NAME_EXIST = 1243036, "脚本版本已存在", "Script version already exist";
    SCRIPT_VERSION_NOT_EXIST = 1243047, "脚本版本不存在", "Script version does not exist";
    APP_NOT_EXIST = 1243049, "业务/业务集不存在或已被归档", "Business/Business Set not exist or archived";
    IP_NOT_EXIST = 1243052, "IP（含管控区域ID）在 CMDB 中不存在：{0}", "IPs (incl. BK-Net) not exist in CMDB: {0}";
    HOST_ID_NOT_EXIST = 1243053, "主机ID在 CMDB 中不存在：{0}", "hostIds not exist in CMDB: {0}";
    DELETE_REF_SCRIPT_FAIL = 1243054, "脚本被引用不支持删除", "Script is referenced and cannot be deleted";
    SERVER_EMPTY = 1244001, "主机为空", "Host is empty";
    HOST_INVALID = 1244002, "主机无效，不属于业务[{0}]，无效的{1}台主机：[{2}]", "Hosts invalid, not under business [{0}]. Invalid {1} hosts: {2}";
    ACCOUNT_NOT_EXIST = 1244003, "账号[{0}]不存在", "Account [{0}] does not exist";
    ACCOUNT_NO_PERMISSION = 1244004, "没有账号[{0}]的权限", "No permission to use this account [{0}]";
    STARTUP_TASK_FAIL = 1244005, "启动作业失败", "Fail to start job";
    TASK_INSTANCE_NOT_EXIST = 1244006, "作业实例不存在", "Task instance does not exist";
    STEP_INSTANCE_NOT_EXIST = 1244007, "作业步骤实例不存在", "Task step instance does not exist";
    HOST_VAR_NOT_EXIST = 1244008, "作业引用的主机列表变量[{0}]不存在", "HOST variable [{0}] does not exist";
    EXECUTE_TASK_PLAN_ILLEGAL = 1244011, "执行方案不合法", "Job plan is illegal";
    EXECUTE_TASK_PLAN_NOT_EXIST = 1244012, "执行方案不存在", "Job plan does not exist";
    SCRIPT_DISABLED = 1244014, "脚本已禁用，无法执行", "Script version has been banned, cannot be executed";
    TASK_STOPPING_DO_NOT_REPEAT = 1244015, "任务正在终止中，请不要重复操作", "Task is being terminated, please wait a sec.";
    NOT_IN_CONFIRM_USER_LIST = 1244016, "只有步骤的确认人可以操作", "Only the confirmer of the step can operate";
    SCRIPT_NOT_EXECUTABLE_STATUS = 1244018, "脚本状态[{0}]，不支持执行", "Script status [{0}], cannot be executed";
    DANGEROUS_SCRIPT_FORBIDDEN = 1244019, "高危脚本，禁止执行", "Dangerous script, cannot be executed";
    FILE_TASK_TARGET_EXCEEDS_LIMIT = 1244021, "文件任务源文件数与目标服务器数的乘积超过限制：{0}", "The number of source files × target servers of the file task exceeds the limit: {0}";
    SCRIPT_TASK_TARGET_EXCEEDS_LIMIT = 1244022, "脚本任务目标服务器数量超过限制：{0}", "The number of script task target servers exceeds the limit: {0}";
    INVALID_ROLLING_EXPR = 1244026, "非法的滚动策略", "Invalid rolling strategy";
    EXCEED_MAX_ROLLING_BATCHES = 1244027, "滚动批次不能大于{0}", "Rolling batch can not be greater than {0}";
    STEP_TARGET_EMPTY = 1244028, "步骤 [{0}] 的目标执行对象为空", "Step [{0}] target execute object is empty";
    RUNNING_JOB_EXCEED_SCOPE_QUOTA = 1244032, "当前执行的作业总量超过业务配额限制", "The number of running jobs exceeds the resource scope quota limit";
    RUNNING_JOB_EXCEED_APP_QUOTA = 1244033, "当前执行的作业总量超过应用配额限制", "The number of running jobs exceeds the application quota limit";
    RUNNING_JOB_EXCEED_SYSTEM_QUOTA = 1244034, "当前执行的作业总量超过系统配额限制", "The number of running jobs exceeds the system quota limit";
    CRON_JOB_NOT_EXIST = 1245001, "定时任务不存在", "Cron job does not exist";
    UPDATE_CRON_JOB_FAILED = 1245002, "更新定时任务失败", "Failed to update cron job";
    CRON_JOB_TIME_PASSED = 1245006, "定时任务执行时间已过", "The execution time of the cron job has passed";
    MISSING_USER_INFO = 1247002, "缺少有效的用户信息", "Missing user info";
    MISSING_APP_CODE = 1247004, "缺少应用编码", "Missing app code";
    USER_ACCESS_APP_FORBIDDEN = 1247403, "无该应用访问权限", "No access permission for this application";
    BK_PERMISSION_DENIED = 9900403, "用户({0})权限不足，请前往权限中心确认并申请补充后重试", "User ({0}) permission not allowed, please confirm and apply permission in IAM";
    FILE_SOURCE_NOT_EXIST = 1260001, "文件源不存在:{0}", "File source does not exist: {0}";
    FILE_SOURCE_ALIAS_ALREADY_EXISTS = 1260004, "文件源别名已存在：{0}", "File source alias already exists: {0}";
    FAIL_TO_FIND_FILE_SOURCE_BY_CODE = 1260012, "无法根据标识{0}找到文件源", "Cannot find file source by code {0}";
    FILE_SOURCE_CODE_ALREADY_EXISTS = 1260015, "文件源标识已存在：{0}", "File source code already exists: {0}";
    ID_AND_CODE_AT_LEAST_ONE = 1260016, "文件源ID与标识至少指定一个", "Specify at least one of the file source id and code";
    LOCK_NOT_ACQUIRED = 500006, "无法获取锁：检查[{0}]正在运行，请稍后重试", "Could not acquire the lock: check [{0}] is already running; retry later";
}

/// Language of API messages, from the `Blueking-Language` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// JOB reads `Blueking-Language`; anything starting with `en` is English, the rest Chinese.
    pub fn from_header(v: Option<&str>) -> Lang {
        match v {
            Some(v) if v.trim().to_ascii_lowercase().starts_with("en") => Lang::En,
            _ => Lang::Zh,
        }
    }
}

impl ErrorCode {
    /// The message with `{n}` placeholders filled.
    pub fn message(self, lang: Lang, args: &[String]) -> String {
        let mut out = self.template(lang).to_string();
        for (i, a) in args.iter().enumerate() {
            out = out.replace(&format!("{{{i}}}"), a);
        }
        out
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fill_arguments_in_both_languages() {
        let c = ErrorCode::MISSING_PARAM_WITH_NAME;
        assert_eq!(c.message(Lang::En, &["target_server".into()]), "Missing request parameter [target_server]");
        assert_eq!(c.message(Lang::Zh, &["target_server".into()]), "请求参数[target_server]缺失");
        assert_eq!(Lang::from_header(Some("en")), Lang::En);
        assert_eq!(Lang::from_header(Some("zh-cn")), Lang::Zh);
        assert_eq!(Lang::from_header(None), Lang::Zh);
    }
}
