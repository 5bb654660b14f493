//! Outcome mapping (design.md): exit 0 → host 9; non-zero → 104; timeout → 102; terminated
//! by a user → 403; agent lost → 310; interpreter or account missing → 101 / 311.

use shoal_proto::agent::ExitReason;
use shoal_proto::status::{gse_code, host_status, RunStatus};

/// Host status and raw `error_code` for an agent's exit report.
pub fn host_result(reason: ExitReason, exit_code: Option<i32>) -> (i32, i32) {
    match reason {
        ExitReason::Exited if exit_code == Some(0) => (host_status::SUCCESS, gse_code::FINISHED),
        ExitReason::Exited | ExitReason::Signaled => (host_status::SCRIPT_NOT_ZERO_EXIT_CODE, gse_code::FINISHED),
        ExitReason::Timeout => (host_status::SCRIPT_TIMEOUT, gse_code::OTHER),
        ExitReason::Cancelled => (host_status::TERMINATE_SUCCESS, gse_code::TERMINATED),
        ExitReason::InterpreterMissing | ExitReason::StartFailed => (host_status::SCRIPT_FAILED, gse_code::OTHER),
        ExitReason::UserError => (host_status::GSE_USER_ERROR, gse_code::OTHER),
        ExitReason::AgentRestarted => (host_status::GSE_AGENT_ERROR, gse_code::OTHER),
        ExitReason::TransferFailed => (host_status::FILE_TRANSFER_FAILED, gse_code::OTHER),
        ExitReason::SourceMissing => (host_status::FILE_SOURCE_MISSING, gse_code::OTHER),
    }
}

/// Status of a script step whose host tasks are all final. `stopping` when a user asked to
/// terminate the job.
pub fn step_status(host_statuses: impl IntoIterator<Item = i32>, stopping: bool) -> RunStatus {
    if stopping {
        return RunStatus::StopSuccess;
    }
    let mut all_ok = true;
    for s in host_statuses {
        if !host_status::is_success(s) {
            all_ok = false;
        }
    }
    if all_ok {
        RunStatus::Success
    } else {
        RunStatus::Fail
    }
}

/// What a job does once one of its steps ended with `step`: `None` runs its next step (it
/// has one, `has_next`), `Some(status)` ends the job with that status.
pub fn after_step(step: RunStatus, stopping: bool, has_next: bool) -> Option<RunStatus> {
    if stopping {
        return Some(RunStatus::StopSuccess);
    }
    match step {
        RunStatus::Success | RunStatus::IgnoreError | RunStatus::Skipped if has_next => None,
        RunStatus::Success | RunStatus::IgnoreError | RunStatus::Skipped => Some(RunStatus::Success),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_map_to_job_codes() {
        assert_eq!(host_result(ExitReason::Exited, Some(0)).0, 9);
        assert_eq!(host_result(ExitReason::Exited, Some(3)).0, 104);
        assert_eq!(host_result(ExitReason::Timeout, None).0, 102);
        assert_eq!(host_result(ExitReason::Cancelled, None), (403, 126));
        assert_eq!(host_result(ExitReason::UserError, None).0, 311);
        assert_eq!(host_result(ExitReason::InterpreterMissing, None).0, 101);
        assert_eq!(host_result(ExitReason::AgentRestarted, None).0, 310);
    }

    #[test]
    fn a_job_goes_on_only_after_a_passing_step() {
        assert_eq!(after_step(RunStatus::Success, false, true), None);
        assert_eq!(after_step(RunStatus::IgnoreError, false, false), Some(RunStatus::Success));
        assert_eq!(after_step(RunStatus::Fail, false, true), Some(RunStatus::Fail));
        assert_eq!(after_step(RunStatus::Success, true, true), Some(RunStatus::StopSuccess));
    }

    #[test]
    fn step_fails_when_any_host_fails() {
        assert_eq!(step_status([9, 9, 3], false), RunStatus::Success);
        assert_eq!(step_status([9, 104], false), RunStatus::Fail);
        assert_eq!(step_status([9, 403], true), RunStatus::StopSuccess);
        assert_eq!(step_status([], false), RunStatus::Success);
    }
}
