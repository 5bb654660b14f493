//! JOB's enumerations, with the values JOB's code puts on the wire.

use serde::{Deserialize, Serialize};

/// Job and step run status (`RunStatusEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i32", try_from = "i32")]
pub enum RunStatus {
    Blank = 1,
    Running = 2,
    Success = 3,
    Fail = 4,
    Skipped = 5,
    IgnoreError = 6,
    WaitingUser = 7,
    Terminated = 8,
    AbnormalState = 9,
    Stopping = 10,
    StopSuccess = 11,
    ConfirmTerminated = 13,
    Abandoned = 14,
    RollingWaiting = 15,
}

impl RunStatus {
    pub const ALL: [RunStatus; 14] = [
        Self::Blank,
        Self::Running,
        Self::Success,
        Self::Fail,
        Self::Skipped,
        Self::IgnoreError,
        Self::WaitingUser,
        Self::Terminated,
        Self::AbnormalState,
        Self::Stopping,
        Self::StopSuccess,
        Self::ConfirmTerminated,
        Self::Abandoned,
        Self::RollingWaiting,
    ];

    /// JOB's `RunStatusEnum.isFinishedStatus`.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Success
                | Self::Fail
                | Self::Skipped
                | Self::IgnoreError
                | Self::Terminated
                | Self::AbnormalState
                | Self::StopSuccess
                | Self::ConfirmTerminated
                | Self::Abandoned
        )
    }

    pub fn from_i32(v: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == v)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Blank => "waiting",
            Self::Running => "running",
            Self::Success => "success",
            Self::Fail => "failed",
            Self::Skipped => "skipped",
            Self::IgnoreError => "ignored error",
            Self::WaitingUser => "waiting for user",
            Self::Terminated => "ended manually",
            Self::AbnormalState => "abnormal",
            Self::Stopping => "terminating",
            Self::StopSuccess => "terminated",
            Self::ConfirmTerminated => "confirmation rejected",
            Self::Abandoned => "abandoned",
            Self::RollingWaiting => "between rolling batches",
        }
    }
}

impl From<RunStatus> for i32 {
    fn from(s: RunStatus) -> i32 {
        s as i32
    }
}

impl TryFrom<i32> for RunStatus {
    type Error = String;
    fn try_from(v: i32) -> Result<Self, String> {
        Self::from_i32(v).ok_or_else(|| format!("unknown run status {v}"))
    }
}

/// Per-host task status (`ExecuteObjectTaskStatusEnum`); only the values Shoal produces
/// are named, any other integer read back is kept as is.
pub mod host_status {
    pub const UNKNOWN_ERROR: i32 = 0;
    pub const AGENT_ERROR: i32 = 1;
    pub const INVALID_HOST: i32 = 2;
    pub const LAST_SUCCESS: i32 = 3;
    pub const WAITING: i32 = 5;
    pub const RUNNING: i32 = 7;
    pub const SUCCESS: i32 = 9;
    pub const FAILED: i32 = 11;
    pub const SUBMIT_FAILED: i32 = 12;
    pub const SCRIPT_FAILED: i32 = 101;
    pub const SCRIPT_TIMEOUT: i32 = 102;
    pub const SCRIPT_TERMINATE: i32 = 103;
    pub const SCRIPT_NOT_ZERO_EXIT_CODE: i32 = 104;
    /// A file step could not place its files on the host.
    pub const FILE_TRANSFER_FAILED: i32 = 202;
    /// A file step's source file does not exist.
    pub const FILE_SOURCE_MISSING: i32 = 203;
    pub const GSE_AGENT_ERROR: i32 = 310;
    pub const GSE_USER_ERROR: i32 = 311;
    pub const GSE_TASK_ERROR: i32 = 399;
    pub const TERMINATE_SUCCESS: i32 = 403;

    /// Everything but waiting and running is final.
    pub fn is_final(s: i32) -> bool {
        s != WAITING && s != RUNNING
    }

    pub fn is_success(s: i32) -> bool {
        s == SUCCESS || s == LAST_SUCCESS
    }

    pub fn label(s: i32) -> &'static str {
        match s {
            AGENT_ERROR | GSE_AGENT_ERROR => "agent abnormal",
            INVALID_HOST => "invalid host",
            LAST_SUCCESS => "succeeded before",
            WAITING => "waiting",
            RUNNING => "running",
            SUCCESS => "success",
            FAILED => "failed",
            SUBMIT_FAILED => "dispatch failed",
            SCRIPT_FAILED => "script failed",
            SCRIPT_TIMEOUT => "timed out",
            SCRIPT_TERMINATE => "script terminated",
            SCRIPT_NOT_ZERO_EXIT_CODE => "non-zero exit",
            GSE_USER_ERROR => "user does not exist",
            GSE_TASK_ERROR => "task error",
            TERMINATE_SUCCESS => "terminated",
            FILE_TRANSFER_FAILED => "file transfer failed",
            FILE_SOURCE_MISSING => "source file missing",
            _ => "unknown",
        }
    }
}

/// Raw per-host `error_code` values JOB documents (§3.3).
pub mod gse_code {
    pub const FINISHED: i32 = 0;
    pub const RUNNING: i32 = 115;
    pub const TERMINATED: i32 = 126;
    pub const OTHER: i32 = -1;
}

/// `script_language`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i32", try_from = "i32")]
pub enum ScriptLanguage {
    Shell = 1,
    Bat = 2,
    Perl = 3,
    Python = 4,
    Powershell = 5,
    Sql = 6,
}

impl ScriptLanguage {
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            1 => Self::Shell,
            2 => Self::Bat,
            3 => Self::Perl,
            4 => Self::Python,
            5 => Self::Powershell,
            6 => Self::Sql,
            _ => return None,
        })
    }

    /// Names accepted on the command line.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "shell" | "sh" | "bash" | "1" => Self::Shell,
            "bat" | "cmd" | "2" => Self::Bat,
            "perl" | "pl" | "3" => Self::Perl,
            "python" | "py" | "python3" | "4" => Self::Python,
            "powershell" | "pwsh" | "ps1" | "5" => Self::Powershell,
            "sql" | "6" => Self::Sql,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Shell => "shell",
            Self::Bat => "bat",
            Self::Perl => "perl",
            Self::Python => "python",
            Self::Powershell => "powershell",
            Self::Sql => "sql",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Shell => "sh",
            Self::Bat => "bat",
            Self::Perl => "pl",
            Self::Python => "py",
            Self::Powershell => "ps1",
            Self::Sql => "sql",
        }
    }
}

impl From<ScriptLanguage> for i32 {
    fn from(s: ScriptLanguage) -> i32 {
        s as i32
    }
}

impl TryFrom<i32> for ScriptLanguage {
    type Error = String;
    fn try_from(v: i32) -> Result<Self, String> {
        Self::from_i32(v).ok_or_else(|| format!("unknown script language {v}"))
    }
}

/// Step type (`StepExecuteTypeEnum`).
pub mod step_type {
    pub const SCRIPT: i32 = 1;
    pub const FILE: i32 = 2;
    pub const CONFIRM: i32 = 3;
}

/// How a job was started (`TaskStartupModeEnum`).
pub mod launch_mode {
    pub const WEB: i32 = 1;
    pub const API: i32 = 2;
    pub const CRON: i32 = 3;
}

/// Task type (`TaskTypeEnum`).
pub mod task_type {
    pub const PLAN: i32 = 0;
    pub const FAST_SCRIPT: i32 = 1;
    pub const FAST_FILE: i32 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_statuses_match_job() {
        let finished: Vec<i32> = RunStatus::ALL.into_iter().filter(|s| s.is_finished()).map(i32::from).collect();
        assert_eq!(finished, vec![3, 4, 5, 6, 8, 9, 11, 13, 14]);
    }

    #[test]
    fn run_status_round_trips_as_integer() {
        let s: RunStatus = serde_json::from_str("11").unwrap();
        assert_eq!(s, RunStatus::StopSuccess);
        assert_eq!(serde_json::to_string(&RunStatus::Fail).unwrap(), "4");
        assert!(serde_json::from_str::<RunStatus>("12").is_err());
    }

    #[test]
    fn host_final_statuses() {
        assert!(!host_status::is_final(5));
        assert!(!host_status::is_final(7));
        assert!(host_status::is_final(9));
        assert!(host_status::is_final(310));
    }
}
