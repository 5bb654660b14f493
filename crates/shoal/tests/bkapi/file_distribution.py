"""The official BlueKing client (bkapi-component-open, unchanged) distributing files through
Shoal: push_config_file, then an upload through generate_local_file_upload_url + a PUT with
requests and a fast_transfer_file of it; each job polled with get_job_instance_status and its
file logs read from batch_get_job_instance_ip_log (file_task_logs).

Configured as a BlueKing app configures it: BK_COMPONENT_API_URL, BK_APP_CODE, BK_APP_SECRET
in the environment, the user given to get_client_by_username.

Usage: file_distribution.py USERNAME ACCOUNT_ALIAS BIZ_ID HOST_IDS(comma-separated) CONF_DIR FILE_DIR PAYLOAD
Prints one JSON object: the job ids and what the file logs said.
"""
import base64
import hashlib
import json
import os
import sys
import time

import requests
from bkapi_client_core.esb import Operation
from bkapi_component.open.shortcuts import get_client_by_username

username, account, biz, host_ids, conf_dir, file_dir, payload = sys.argv[1:8]
host_ids = [int(h) for h in host_ids.split(",")]
scope = {"bk_scope_type": "biz", "bk_scope_id": biz}

client = get_client_by_username(username)
# Operations this release of the package does not declare, added the way the package
# declares its own (an Operation on the jobv3 group, ESB path form).
for name in ("push_config_file", "generate_local_file_upload_url"):
    client.jobv3.register(name, Operation(name=name, method="POST", path="/api/c/compapi{bk_api_ver}/jobv3/%s/" % name))


def ok(answer, what):
    if not answer.get("result") or answer.get("code") != 0:
        sys.exit("%s failed: %s" % (what, json.dumps(answer)))
    return answer["data"]


def wait(job_id):
    deadline = time.time() + 60
    while True:
        data = ok(client.jobv3.get_job_instance_status(dict(scope, job_instance_id=job_id, return_ip_result=True)), "get_job_instance_status")
        if data["finished"]:
            return data
        if time.time() > deadline:
            sys.exit("job %s did not finish: %s" % (job_id, json.dumps(data)))
        time.sleep(0.2)


def file_task_logs(job_id, status):
    step_id = status["step_instance_list"][0]["step_instance_id"]
    data = ok(
        client.jobv3.batch_get_job_instance_ip_log(dict(scope, job_instance_id=job_id, step_instance_id=step_id, host_id_list=host_ids)),
        "batch_get_job_instance_ip_log",
    )
    if data.get("log_type") != 2:
        sys.exit("file logs expected (log_type 2): %s" % json.dumps(data))
    return {str(h["bk_host_id"]): [(f["dest_path"], f["status"], f["process"]) for f in h["file_logs"]] for h in data["file_task_logs"]}


result = {}

# 1. push_config_file: two small files as Base64.
files = [("app.conf", b"listen = 8080\n"), ("extra.conf", b"debug = false\n")]
answer = client.jobv3.push_config_file(
    dict(
        scope,
        account_alias=account,
        file_target_path=conf_dir,
        file_list=[{"file_name": n, "content": base64.b64encode(c).decode()} for n, c in files],
        target_server={"host_id_list": host_ids},
    )
)
job = ok(answer, "push_config_file")["job_instance_id"]
status = wait(job)
result["push_config_file"] = {
    "job_status": status["job_instance"]["status"],
    "hosts": sorted(h["status"] for h in status["step_instance_list"][0]["step_ip_result_list"]),
    "file_task_logs": file_task_logs(job, status),
}

# 2. An upload URL, the file PUT with requests, then fast_transfer_file of its path.
slot = ok(client.jobv3.generate_local_file_upload_url(dict(scope, file_name_list=["payload.bin"])), "generate_local_file_upload_url")
slot = slot["url_map"]["payload.bin"]
with open(payload, "rb") as f:
    put = requests.put(slot["upload_url"], data=f, headers={"X-BKREPO-OVERWRITE": "True"}, timeout=60)
put.raise_for_status()
node = put.json()["data"]["nodeInfo"]
with open(payload, "rb") as f:
    md5 = hashlib.md5(f.read()).hexdigest()
if node["md5"] != md5:
    sys.exit("upload md5 %s, file md5 %s" % (node["md5"], md5))
answer = client.jobv3.fast_transfer_file(
    dict(
        scope,
        account_alias=account,
        file_target_path=file_dir,
        file_source_list=[{"file_list": [slot["path"]], "file_type": 2}],
        target_server={"host_id_list": host_ids},
        transfer_mode=2,
    )
)
job = ok(answer, "fast_transfer_file")["job_instance_id"]
status = wait(job)
result["fast_transfer_file"] = {
    "job_status": status["job_instance"]["status"],
    "hosts": sorted(h["status"] for h in status["step_instance_list"][0]["step_ip_result_list"]),
    "file_task_logs": file_task_logs(job, status),
    "uploaded_size": node["size"],
}
print(json.dumps(result, sort_keys=True))
