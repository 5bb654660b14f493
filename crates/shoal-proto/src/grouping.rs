//! Host results grouped by status + exit code + identical output, so ten thousand identical
//! answers show once: `shoal run` prints groups, the console's live job page draws them. The
//! output is whatever identifies it for the caller (the text itself, or a hash of it).

use std::collections::BTreeMap;

use crate::jobv3::HostResultDto;
use crate::status::host_status;

pub struct Group<'a, O> {
    pub status: i32,
    pub exit_code: i32,
    pub output: O,
    pub hosts: Vec<&'a HostResultDto>,
}

/// Groups in a stable order: failures first (they matter most), then by size; hosts in a
/// group by cloud, address, host id.
pub fn group<'a, O: Ord>(outcomes: impl IntoIterator<Item = (&'a HostResultDto, O)>) -> Vec<Group<'a, O>> {
    let mut map: BTreeMap<(i32, i32, O), Vec<&'a HostResultDto>> = BTreeMap::new();
    for (host, output) in outcomes {
        map.entry((host.status, host.exit_code, output)).or_default().push(host);
    }
    let ip_key = |h: &&HostResultDto| (h.bk_cloud_id, h.ip.parse::<std::net::Ipv4Addr>().map(u32::from).unwrap_or(u32::MAX), h.bk_host_id);
    let mut groups: Vec<Group<'a, O>> = map
        .into_iter()
        .map(|((status, exit_code, output), mut hosts)| {
            hosts.sort_by_key(ip_key);
            Group { status, exit_code, output, hosts }
        })
        .collect();
    groups.sort_by_key(|g| (host_status::is_success(g.status), std::cmp::Reverse(g.hosts.len())));
    groups
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
        let groups = group(hosts.iter().map(|h| (h, if h.status == 9 { "ok\n" } else { "boom\n" })));
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].status, groups[0].hosts.len()), (104, 1));
        assert_eq!(groups[1].hosts.len(), 1000);
        assert_eq!(groups[1].hosts[0].ip, "10.0.0.1", "hosts are listed by address");
        assert_eq!(groups[1].hosts[1].ip, "10.0.0.2");
        let by_hash = group(hosts.iter().map(|h| (h, h.bk_host_id % 2)));
        assert_eq!(by_hash.len(), 3, "the same status with two outputs is two groups");
    }
}
