#!/bin/sh
# Shoal built-in check, run on each host by `shoal check`. It checks the Shoal agent that runs
# it and, when asked, the bkunifylogbeat log collector, and prints ONE line of JSON:
#   {"status": bool, "data": [{"module": "...", "item": "...", "status": bool, "message": "..."}]}
# (the contract of every check script, see docs/checks.md). It always exits 0 once it has
# printed its line; "status" is true when every item passed.
#
# Options:
#   --server URL          the server as this host reaches it: GET URL/healthz must answer
#   --state-dir DIR       the agent's state dir [default: the parent of this script's dir]
#   --expect-version V    the agent version expected (checked when the agent is a shoal binary)
#   --min-free-mb N       free space wanted on the state dir's file system [default: 100]
#   --gse_path P --subscription_id N --ipc_socket_file F
#                         the log collector checks, as the original runs them: only when
#                         subscription_id is not 0

SERVER=""
STATE_DIR=""
EXPECT_VERSION=""
MIN_FREE_MB=100
GSE_PATH="/usr/local/gse/"
SUBSCRIPTION_ID=0
IPC_SOCKET_FILE="/var/run/ipc.state.report"

while [ $# -gt 0 ]; do
    arg="$1"
    case "$arg" in
        --*=*) val="${arg#*=}"; arg="${arg%%=*}" ;;
        *) val="${2-}"; shift ;;
    esac
    case "$arg" in
        --server) SERVER="$val" ;;
        --state-dir) STATE_DIR="$val" ;;
        --expect-version) EXPECT_VERSION="$val" ;;
        --min-free-mb) MIN_FREE_MB="$val" ;;
        --gse_path|--gse-path|-p) GSE_PATH="$val" ;;
        --subscription_id|--subscription-id|-s) SUBSCRIPTION_ID="$val" ;;
        --ipc_socket_file|--ipc-socket-file|-i) IPC_SOCKET_FILE="$val" ;;
        *) ;;
    esac
    shift
done

ITEMS=""
ALL_OK=true

json_escape() {
    printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\000-\010\013\014\016-\037' | sed 's/\\/\\\\/g; s/"/\\"/g'
}

# add MODULE ITEM true|false MESSAGE
add() {
    [ "$3" = true ] || ALL_OK=false
    entry="{\"module\": \"$(json_escape "$1")\", \"item\": \"$(json_escape "$2")\", \"status\": $3, \"message\": \"$(json_escape "$4")\"}"
    if [ -z "$ITEMS" ]; then ITEMS="$entry"; else ITEMS="$ITEMS, $entry"; fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# ---- the Shoal agent --------------------------------------------------------------------
M=shoal_agent
AGENT_PID="$PPID"

# bin_file: the agent's executable (the process that started this script).
AGENT_EXE=""
[ -r "/proc/$AGENT_PID/exe" ] || [ -L "/proc/$AGENT_PID/exe" ] && AGENT_EXE=$(readlink "/proc/$AGENT_PID/exe" 2>/dev/null)
[ -n "$AGENT_EXE" ] || AGENT_EXE=$(command -v shoal 2>/dev/null)
if [ -n "$AGENT_EXE" ] && [ -x "$AGENT_EXE" ]; then
    add $M bin_file true "$AGENT_EXE"
else
    add $M bin_file false "agent executable not found (pid $AGENT_PID: ${AGENT_EXE:-unreadable})"
fi

# version: only a shoal binary is asked for its version.
if [ -n "$EXPECT_VERSION" ]; then
    case "$(basename "${AGENT_EXE:-none}")" in
        shoal|shoal-*)
            VERSION=$("$AGENT_EXE" --version 2>/dev/null | head -n 1)
            case "$VERSION" in
                *"$EXPECT_VERSION"*) add $M version true "$VERSION" ;;
                *) add $M version false "agent reports ${VERSION:-nothing}, expected $EXPECT_VERSION" ;;
            esac
            ;;
        *) add $M version true "agent embedded in ${AGENT_EXE:-an unknown program}; version not checked" ;;
    esac
fi

# process: this script's parent is the agent; an orphaned script (parent 1) means it died.
if [ "$AGENT_PID" -le 1 ] 2>/dev/null; then
    add $M process false "the agent that started this script is gone"
elif kill -0 "$AGENT_PID" 2>/dev/null || [ -d "/proc/$AGENT_PID" ]; then
    RSS=$(awk '/^VmRSS/{print $2" "$3}' "/proc/$AGENT_PID/status" 2>/dev/null)
    THREADS=$(awk '/^Threads/{print $2}' "/proc/$AGENT_PID/status" 2>/dev/null)
    add $M process true "pid $AGENT_PID${RSS:+, rss $RSS}${THREADS:+, $THREADS threads}"
else
    add $M process false "the agent that started this script (pid $AGENT_PID) is not running"
fi

# state_dir: where the agent keeps unacknowledged results.
if [ -z "$STATE_DIR" ]; then
    case "$0" in
        */scripts/*) STATE_DIR=$(dirname "$(dirname "$0")") ;;
    esac
fi
if [ -n "$STATE_DIR" ] && [ -d "$STATE_DIR" ]; then
    BACKLOG=0
    [ -r "$STATE_DIR/outbox" ] && BACKLOG=$(ls "$STATE_DIR/outbox" 2>/dev/null | wc -l | tr -d ' ')
    if [ -d "$STATE_DIR/scripts" ]; then
        add $M state_dir true "$STATE_DIR, $BACKLOG task results not yet acknowledged"
    else
        add $M state_dir false "$STATE_DIR has no scripts directory"
    fi
else
    add $M state_dir false "state dir ${STATE_DIR:-unknown} does not exist"
fi

# server: the server answers from this host.
if [ -n "$SERVER" ]; then
    URL="${SERVER%/}/healthz"
    if have curl; then
        ANSWER=$(curl -fsS -m 5 "$URL" 2>&1)
    elif have wget; then
        ANSWER=$(wget -q -T 5 -O - "$URL" 2>&1)
    else
        ANSWER="cannot test: neither curl nor wget is installed"
    fi
    if [ "$ANSWER" = ok ]; then
        add $M server true "$URL answers"
    else
        add $M server false "$URL: $ANSWER"
    fi
fi

# disk_space: free space where the state dir lives.
DF_DIR="${STATE_DIR:-/}"
[ -d "$DF_DIR" ] || DF_DIR=/
FREE_KB=$(df -Pk "$DF_DIR" 2>/dev/null | awk 'NR==2{print $4}')
if [ -n "$FREE_KB" ]; then
    FREE_MB=$((FREE_KB / 1024))
    if [ "$FREE_MB" -ge "$MIN_FREE_MB" ]; then
        add $M disk_space true "$FREE_MB MB free on $DF_DIR"
    else
        add $M disk_space false "$FREE_MB MB free on $DF_DIR, less than $MIN_FREE_MB MB"
    fi
else
    add $M disk_space false "df could not read $DF_DIR"
fi

# clock_skew: the host's clock; the caller compares it with the server's times of the job.
add $M clock_skew true "host_epoch=$(date +%s)"

# ---- the bkunifylogbeat log collector (module and item codes of the original) ------------
if [ "$SUBSCRIPTION_ID" != 0 ] && [ -n "$SUBSCRIPTION_ID" ]; then
    C=bkunifylogbeat
    GSE="${GSE_PATH%/}"
    BIN="$GSE/plugins/bin/bkunifylogbeat"
    MAIN="$GSE/plugins/etc/bkunifylogbeat.conf"
    ETC="$GSE/plugins/etc/bkunifylogbeat"
    PROCINFO="$GSE/agent/etc/procinfo.json"

    if [ -e "$BIN" ]; then add $C bin_file true ""; else add $C bin_file false "$BIN does not exist"; fi

    PID=""
    for p in $(ps -e -o pid= -o comm= 2>/dev/null | awk '$2 == "bkunifylogbeat" {print $1}'); do
        EXE=$(readlink "/proc/$p/exe" 2>/dev/null)
        CWD=$(readlink "/proc/$p/cwd" 2>/dev/null)
        case "$EXE $CWD" in *"$GSE"*) PID="$p"; break ;; esac
    done
    if [ -z "$PID" ]; then
        add $C process false "bkunifylogbeat is not running"
    else
        RESTARTS=$(grep "$(date +%Y%m%d)" /tmp/bkc.log 2>/dev/null | grep -c bkunifylogbeat)
        if [ "${RESTARTS:-0}" -gt 10 ]; then
            add $C process false "restart/reload times is over 10"
        else
            USAGE=$(ps -o %cpu= -o %mem= -p "$PID" 2>/dev/null | awk '{print "cpu_usage: "$1"%, mem_usage: "$2"%"}')
            add $C process true "$USAGE"
        fi
    fi

    if [ ! -f "$MAIN" ]; then
        add $C main_config false "main config file is not exists"
    else
        PATHS=$(sed -n '/^bkunifylogbeat.multi_config/,/^$/p' "$MAIN" | grep path | awk -F: '{print $2}' | tr -d ' "'"'")
        if printf '%s\n' "$PATHS" | grep -qx -e "$ETC" -e "$ETC/"; then
            add $C main_config true ""
        else
            add $C main_config false "multi_config not have path [$ETC]"
        fi
    fi

    SUB=$(find "$ETC" -type f 2>/dev/null | grep -E "bkunifylogbeat_sub_${SUBSCRIPTION_ID}([^0-9]|$)" | head -n 1)
    if [ -n "$SUB" ]; then
        add $C config true "real_config_name: $(basename "$SUB")"
    else
        add $C config false "no sub config of subscription $SUBSCRIPTION_ID in $ETC"
    fi

    if grep -q bkunifylogbeat "$PROCINFO" 2>/dev/null; then
        add $C hosted true ""
    else
        add $C hosted false "bkunifylogbeat is not in $PROCINFO"
    fi

    if [ -x "$BIN" ]; then
        HEALTH=$("$BIN" healthz 2>&1)
        if [ $? -eq 0 ]; then add $C healthz true "$HEALTH"; else add $C healthz false "$HEALTH"; fi
    else
        add $C healthz false "$BIN cannot be run"
    fi

    G=gse_agent
    LISTEN=$( (ss -lntup 2>/dev/null || netstat -antulp 2>/dev/null) | grep gse_agent | grep -i listen)
    if [ -n "$LISTEN" ]; then add $G process true ""; else add $G process false "gse_agent is not listening"; fi

    if [ -e "$IPC_SOCKET_FILE" ]; then add $G socket true ""; else add $G socket false "$IPC_SOCKET_FILE does not exist"; fi

    QUEUES=$(ss -x -p 2>/dev/null | grep -F "$IPC_SOCKET_FILE")
    if [ -z "$QUEUES" ]; then
        add $G socket_queue_status false "socket not used"
    elif printf '%s\n' "$QUEUES" | awk '$3 != 0 || $4 != 0 {found=1} END {exit !found}'; then
        add $G socket_queue_status false "socket queue blocking"
    else
        add $G socket_queue_status true ""
    fi

    if (ss -anp 2>/dev/null || netstat -anplut 2>/dev/null) | grep -q 58625; then
        add $G dataserver_port true ""
    else
        add $G dataserver_port false "dataserver not exist"
    fi
fi

printf '{"status": %s, "data": [%s]}\n' "$ALL_OK" "$ITEMS"
exit 0
