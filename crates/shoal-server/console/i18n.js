// Chinese and English strings; the language comes from a stored choice, else the browser.
const STRINGS = {
  en: {
    login: 'Log in', logout: 'Log out', username: 'User name', password: 'Password', login_failed: 'Wrong user name or password',
    run: 'Quick execution', jobs: 'Jobs', fleet: 'Fleet', audit: 'Audit', approvals: 'Approvals', rules: 'Dangerous rules',
    business: 'Business', script: 'Script', language: 'Language', account: 'Account', targets: 'Targets (IPs or host ids)',
    matched: 'matched hosts: {0} of {1} entries', unmatched: 'not found: {0}', timeout: 'Timeout (s)', job_name: 'Job name', submit: 'Execute',
    terminate: 'Terminate', retry_failed: 'Retry failed', retry_all: 'Retry all', confirm: 'Confirm', reject: 'Reject', skip: 'Skip',
    ignore_error: 'Ignore error', step: 'Step', status: 'Status', hosts: 'hosts', host: 'host', exit_code: 'exit', no_output: '(no output)',
    log: 'Log', search: 'Search', download: 'Download', lines: '{0} lines', loading: 'Loading…', live: 'live', reconnecting: 'reconnecting…',
    name: 'Name', operator: 'Operator', created: 'Created', duration: 'Duration', from: 'From', to: 'To', any: 'Any', filter: 'Filter',
    alive: 'alive', lost: 'lost', versions: 'Agent versions', pending_agents: 'Agents waiting for acceptance', accept: 'Accept', none: 'None',
    action: 'Action', time: 'Time', resource: 'Resource', verify_chain: 'Verify chain', chain_ok: 'Chain intact: {0} events checked, head {1}',
    chain_bad: 'Chain BROKEN at {0}: {1}', template: 'Template', version: 'Version', author: 'Author', changes: 'Changes', comment: 'Comment',
    approve: 'Approve', check_script: 'Check this script', findings: 'Findings', no_findings: 'No dangerous statement found', expression: 'Expression',
    description: 'Description', more_hosts: '… and {0} more', output_cut: '(output cut; open a host for all of it)', previous: 'Previous', next: 'Next',
    ok: 'Done', load_more: 'Load more', ended: 'finished', admins_only: 'Only platform admins accept agents',
    all_hosts: 'All {0} hosts', all_in_group: 'All {0} hosts of this group',
    filter_hosts: 'Filter by IP or host id', hosts_matched: '{0} of {1} hosts',
    from_library: '(type it below)', params: 'Parameters', sensitive: 'sensitive', rolling: 'Rolling batches', selector: 'Label selector',
    topology: 'Topology', dynamic_groups: 'Dynamic groups', dyn_groups: '{0} dynamic group(s)',
    scan: 'record', intercept: 'block',
    files: 'Files', files_to_send: 'Files to send', target_dir: 'Target directory', send_files: 'Upload and send', uploading: 'Uploading',
    next_batch: 'Next batch', next_step: 'Go on to the next step',
    rolling_stop: 'stop at a failure', rolling_ignore: 'go on past failures', rolling_confirm: 'confirm each batch',
    library: 'Library', templates: 'Templates', scripts: 'Scripts', cron: 'Cron', rollback: 'Roll back to this', publish: 'Publish', disable: 'Disable', enable: 'Enable',
    new_cron: 'New cron job (saved paused)', plan: 'Plan', cron_expr: 'Crontab (minute hour day month weekday)', save: 'Save', delete: 'Delete',
    new_rule: 'New rule (saved disabled)', add: 'Add', next_fire: 'Next run',
    edit: 'Edit', cancel: 'Cancel', edit_cron: 'Edit cron job', variables: 'Variables', unchanged: '(unchanged)',
    host_list_kept: 'host list kept as it is', run_once_at: 'Or once, at (when no crontab is given)', enabled: 'enabled', disabled: 'disabled',
    set: 'Set', module: 'Module', topo_none: '(no {0})',
    seq: 'Seq', app: 'App', detail: 'Detail',
    state_current: 'current', state_pending: 'pending approval', state_rejected: 'rejected', state_superseded: 'superseded',
    script_draft: 'draft', script_online: 'online', script_offline: 'offline', script_disabled: 'disabled',
  },
  zh: {
    login: '登录', logout: '退出', username: '用户名', password: '密码', login_failed: '用户名或密码错误',
    run: '快速执行', jobs: '执行历史', fleet: '主机概览', audit: '审计', approvals: '审批', rules: '高危语句规则',
    business: '业务', script: '脚本', language: '语言', account: '执行账号', targets: '目标（IP 或主机 ID）',
    matched: '匹配主机：{0} / {1} 项', unmatched: '未找到：{0}', timeout: '超时（秒）', job_name: '任务名称', submit: '执行',
    terminate: '终止', retry_failed: '失败重试', retry_all: '全部重试', confirm: '确认', reject: '驳回', skip: '跳过',
    ignore_error: '忽略错误', step: '步骤', status: '状态', hosts: '台主机', host: '台主机', exit_code: '退出码', no_output: '（无输出）',
    log: '日志', search: '搜索', download: '下载', lines: '{0} 行', loading: '加载中…', live: '实时', reconnecting: '重新连接中…',
    name: '名称', operator: '执行人', created: '创建时间', duration: '耗时', from: '从', to: '到', any: '全部', filter: '筛选',
    alive: '在线', lost: '失联', versions: 'Agent 版本', pending_agents: '待接入的 Agent', accept: '接入', none: '无',
    action: '操作', time: '时间', resource: '对象', verify_chain: '校验审计链', chain_ok: '审计链完整：校验 {0} 条，链头 {1}',
    chain_bad: '审计链在 {0} 处断裂：{1}', template: '模板', version: '版本', author: '作者', changes: '变更', comment: '意见',
    approve: '批准', check_script: '检查此脚本', findings: '检查结果', no_findings: '未发现高危语句', expression: '表达式',
    description: '描述', more_hosts: '… 另有 {0} 台', output_cut: '（输出已截断；打开主机查看全部）', previous: '上一页', next: '下一页',
    ok: '完成', load_more: '加载更多', ended: '已结束', admins_only: '仅平台管理员可以接入 Agent',
    all_hosts: '全部 {0} 台主机', all_in_group: '此分组全部 {0} 台主机',
    filter_hosts: '按 IP 或主机 ID 筛选', hosts_matched: '{0} / {1} 台主机',
    from_library: '（在下方输入）', params: '脚本参数', sensitive: '敏感参数', rolling: '滚动批次', selector: '标签选择器',
    topology: '拓扑', dynamic_groups: '动态分组', dyn_groups: '{0} 个动态分组',
    scan: '扫描', intercept: '拦截',
    files: '文件分发', files_to_send: '要分发的文件', target_dir: '目标路径', send_files: '上传并分发', uploading: '正在上传',
    next_batch: '执行下一批', next_step: '进入下一步',
    rolling_stop: '失败即停止', rolling_ignore: '忽略失败继续', rolling_confirm: '每批人工确认',
    library: '作业库', templates: '作业模板', scripts: '脚本', cron: '定时任务', rollback: '回滚到此版本', publish: '上线', disable: '禁用', enable: '启用',
    new_cron: '新建定时任务（保存后为暂停）', plan: '执行方案', cron_expr: 'Crontab（分 时 日 月 周）', save: '保存', delete: '删除',
    new_rule: '新建规则（保存后为停用）', add: '添加', next_fire: '下次执行',
    edit: '编辑', cancel: '取消', edit_cron: '编辑定时任务', variables: '全局变量', unchanged: '（不变）',
    host_list_kept: '主机列表保持不变', run_once_at: '或单次执行于（未填 Crontab 时）', enabled: '已启用', disabled: '已停用',
    set: '集群', module: '模块', topo_none: '（无{0}）',
    seq: '序号', app: '应用', detail: '详情',
    state_current: '当前版本', state_pending: '待审批', state_rejected: '已驳回', state_superseded: '历史版本',
    script_draft: '未上线', script_online: '已上线', script_offline: '已下线', script_disabled: '已禁用',
  },
};

const RUN_STATUS = {
  en: { 1: 'waiting', 2: 'running', 3: 'succeeded', 4: 'failed', 5: 'skipped', 6: 'error ignored', 7: 'waiting for user', 8: 'terminated', 9: 'abnormal', 10: 'terminating', 11: 'terminated', 13: 'rejected at confirmation', 14: 'abandoned', 15: 'rolling: waiting' },
  zh: { 1: '等待执行', 2: '正在执行', 3: '执行成功', 4: '执行失败', 5: '跳过', 6: '忽略错误', 7: '等待用户', 8: '手动结束', 9: '状态异常', 10: '强制终止中', 11: '强制终止成功', 13: '确认终止', 14: '被丢弃', 15: '滚动等待' },
};

// Host result statuses in Chinese (English comes from the server's label).
const HOST_STATUS_ZH = { 0: '未知错误', 1: 'Agent 异常', 2: '无效主机', 3: '上次已成功', 5: '等待执行', 7: '正在执行', 9: '执行成功', 11: '执行失败', 12: '任务下发失败',
  101: '脚本执行失败', 102: '脚本执行超时', 103: '脚本执行被终止', 104: '脚本返回值非零', 202: '文件传输失败', 203: '源文件不存在', 310: 'Agent 异常',
  311: '用户名不存在', 399: '任务执行出错', 403: '任务强制终止成功' };

let current = localStorage.getItem('shoal.lang') || ((navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en');

export function lang() { return current; }

export function setLang(l) {
  current = STRINGS[l] ? l : 'en';
  localStorage.setItem('shoal.lang', current);
  document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
}

export function t(key, ...args) {
  const s = (STRINGS[current] && STRINGS[current][key]) || STRINGS.en[key] || key;
  return s.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ''));
}

export function runStatus(code) {
  return (RUN_STATUS[current] || RUN_STATUS.en)[code] || String(code);
}

setLang(current);

export function hostStatus(code, label) {
  return current === 'zh' ? HOST_STATUS_ZH[code] || label : label;
}
