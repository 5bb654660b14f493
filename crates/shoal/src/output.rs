//! Human output: results grouped by status + exit code + identical output, so ten thousand
//! identical answers print once.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use shoal_proto::jobv3::{HostResultDto, JobInstanceStatus, ScriptHostLogDto};
use shoal_proto::status::{host_status, RunStatus};

pub struct HostOutcome<'a> {
    pub host: &'a HostResultDto,
    pub output: &'a str,
}

pub type Group<'a> = shoal_proto::grouping::Group<'a, &'a str>;

/// Groups in a stable order: failures first (they matter most), then by size (the grouping
/// the console's job page shows too: [`shoal_proto::grouping`]).
pub fn group<'a>(outcomes: &[HostOutcome<'a>]) -> Vec<Group<'a>> {
    shoal_proto::grouping::group(outcomes.iter().map(|o| (o.host, o.output)))
}

fn host_label(h: &HostResultDto) -> String {
    format!("{} (#{})", h.ip, h.bk_host_id)
}

pub fn print_groups(groups: &[Group<'_>]) {
    for g in groups {
        let n = g.hosts.len();
        let mark = if host_status::is_success(g.status) { "✔" } else { "✘" };
        println!(
            "{mark} {n} host{} · {} ({}) · exit {}",
            if n == 1 { "" } else { "s" },
            host_status::label(g.status),
            g.status,
            g.exit_code
        );
        let shown: Vec<String> = g.hosts.iter().take(8).map(|h| host_label(h)).collect();
        let more = if n > 8 { format!(" … and {} more", n - 8) } else { String::new() };
        println!("  {}{more}", shown.join(", "));
        let text = g.output.trim_end_matches('\n');
        if text.is_empty() {
            println!("  │ (no output)");
        } else {
            for line in text.lines() {
                println!("  │ {line}");
            }
        }
        println!();
    }
}

pub fn summary(st: &JobInstanceStatus) -> String {
    let hosts: Vec<&HostResultDto> = st.step_instance_list.iter().flat_map(|s| s.step_ip_result_list.iter().flatten()).collect();
    let ok = hosts.iter().filter(|h| host_status::is_success(h.status)).count();
    let status = RunStatus::from_i32(st.job_instance.status).map_or("unknown", RunStatus::label);
    let took = st.job_instance.total_time.map(|t| format!(" in {:.2}s", t as f64 / 1000.0)).unwrap_or_default();
    format!("job {} \"{}\": {status}{took} · {ok}/{} hosts succeeded", st.job_instance.job_instance_id, st.job_instance.name, hosts.len())
}

/// The job as JSON: `hosts` holds every host result of every step (with its step id and
/// output), `steps` the steps themselves.
pub fn to_json(st: &JobInstanceStatus, logs: &[(i64, ScriptHostLogDto)]) -> Value {
    let by_host: BTreeMap<(i64, i64), &str> = logs.iter().map(|(s, l)| ((*s, l.bk_host_id), l.log_content.as_str())).collect();
    let mut hosts = vec![];
    let mut steps = vec![];
    for step in &st.step_instance_list {
        steps.push(json!({"step_instance_id": step.step_instance_id, "name": step.name, "type": step.step_type, "status": step.status,
                          "execute_count": step.execute_count}));
        for h in step.step_ip_result_list.iter().flatten() {
            let out = by_host.get(&(step.step_instance_id, h.bk_host_id)).copied().unwrap_or("");
            hosts.push(json!({"step_instance_id": step.step_instance_id, "bk_host_id": h.bk_host_id, "ip": h.ip,
                              "bk_cloud_id": h.bk_cloud_id, "status": h.status, "exit_code": h.exit_code, "output": out}));
        }
    }
    json!({"job_instance_id": st.job_instance.job_instance_id, "name": st.job_instance.name,
           "status": st.job_instance.status, "finished": st.finished, "steps": steps, "hosts": hosts})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: i64, status: i32, exit_code: i32) -> HostResultDto {
        HostResultDto {
            bk_host_id: id,
            ip: format!("10.0.0.{id}"),
            bk_cloud_id: 0,
            status,
            tag: String::new(),
            exit_code,
            error_code: 0,
            start_time: None,
            end_time: None,
            total_time: None,
        }
    }

    #[test]
    fn identical_answers_group_once_and_failures_come_first() {
        let hosts: Vec<HostResultDto> = (1..=1000).map(|i| host(i, 9, 0)).chain([host(1001, 104, 2)]).collect();
        let outcomes: Vec<HostOutcome> =
            hosts.iter().map(|h| HostOutcome { host: h, output: if h.status == 9 { "ok\n" } else { "boom\n" } }).collect();
        let groups = group(&outcomes);
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].status, groups[0].hosts.len()), (104, 1));
        assert_eq!(groups[1].hosts.len(), 1000);
        assert_eq!(groups[1].hosts[0].ip, "10.0.0.1", "hosts are listed by address");
        assert_eq!(groups[1].hosts[1].ip, "10.0.0.2");
    }
}
